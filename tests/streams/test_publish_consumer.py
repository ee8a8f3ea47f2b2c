"""The publish socket /ws/feeds/<uuid>/publish/, authorised by the producer token."""

import json
import math

import pytest
from channels.db import database_sync_to_async
from django.db import OperationalError

from streams.models import Sample
from streams.services import producer_token_rotate
from tests.streams.wedged import wedge_with_1e308
from tests.streams.wsclient import communicator, receive, refused

pytestmark = pytest.mark.django_db(transaction=True)


def publisher(feed_uuid, token=None, *, bearer=None):
    path = f"/ws/feeds/{feed_uuid}/publish/" + (f"?token={token}" if token else "")
    headers = [(b"authorization", f"Bearer {bearer}".encode())] if bearer else []
    return communicator(path, origin=None, headers=headers)


async def persisted(feed):
    return await database_sync_to_async(
        lambda: list(Sample.objects.filter(feed=feed).order_by("seq").values_list("seq", "value"))
    )()


async def test_each_frame_is_acked_with_its_seq_once_durable(acme_feed):
    comm = publisher(acme_feed.feed.uuid, bearer=acme_feed.token)
    connected, _ = await comm.connect()
    assert connected
    await comm.send_to(text_data=json.dumps({"value": 1}))
    await comm.send_to(text_data=json.dumps({"value": 0, "ts": 100.5}))
    await comm.send_to(text_data=json.dumps({"values": [1, 1, 0]}))
    acks = [await receive(comm) for _ in range(3)]
    assert acks == [{"type": "ack", "seq": 1}, {"type": "ack", "seq": 2}, {"type": "ack", "seq": 5}]
    assert await persisted(acme_feed.feed) == [(1, 1), (2, 0), (3, 1), (4, 1), (5, 0)]
    await comm.disconnect()


async def test_token_in_query_string_works_for_simple_clients(acme_feed):
    comm = publisher(acme_feed.feed.uuid, token=acme_feed.token)
    connected, _ = await comm.connect()
    assert connected
    await comm.disconnect()


@pytest.mark.parametrize("token", [None, "sst_forged", "not-even-close"])
async def test_missing_or_forged_token_is_refused(acme_feed, token):
    assert await refused(publisher(acme_feed.feed.uuid, bearer=token))


async def test_token_of_another_feed_is_refused(acme_feed, globex_feed):
    assert await refused(publisher(acme_feed.feed.uuid, bearer=globex_feed.token))


async def test_rotated_token_is_refused_and_the_new_one_works(acme_feed):
    new_token = await database_sync_to_async(producer_token_rotate)(producer=acme_feed.producer)
    assert await refused(publisher(acme_feed.feed.uuid, bearer=acme_feed.token))
    assert not await refused(publisher(acme_feed.feed.uuid, bearer=new_token))


async def test_bad_frames_get_errors_change_nothing_and_the_socket_stays_usable(acme_feed):
    comm = publisher(acme_feed.feed.uuid, bearer=acme_feed.token)
    await comm.connect()
    for bad in ["{not json", json.dumps({"value": 7}), json.dumps({"nothing": 1})]:
        await comm.send_to(text_data=bad)
    await comm.send_to(bytes_data=b"\x00\x01")
    errors = [await receive(comm) for _ in range(4)]
    assert [e["error"] for e in errors] == ["bad_json", "bad_value", "bad_frame", "bad_frame"]
    assert all(e["type"] == "error" and e["message"] for e in errors)
    assert await persisted(acme_feed.feed) == []
    await comm.send_to(text_data=json.dumps({"value": 1}))
    assert await receive(comm) == {"type": "ack", "seq": 1}
    await comm.disconnect()


async def test_acks_and_errors_keep_the_order_frames_were_sent_in(acme_feed):
    comm = publisher(acme_feed.feed.uuid, bearer=acme_feed.token)
    await comm.connect()
    for frame in [{"value": 1}, {"value": 9}, {"value": 0}]:
        await comm.send_to(text_data=json.dumps(frame))
    replies = [await receive(comm) for _ in range(3)]
    assert [r["type"] for r in replies] == ["ack", "error", "ack"]
    assert [replies[0]["seq"], replies[2]["seq"]] == [1, 2]
    await comm.disconnect()


async def test_viewers_see_what_the_publisher_sent(acme_feed):
    viewer = communicator(f"/ws/feeds/{acme_feed.feed.uuid}/?key={acme_feed.feed.share_key}")
    await viewer.connect()
    await receive(viewer)
    comm = publisher(acme_feed.feed.uuid, bearer=acme_feed.token)
    await comm.connect()
    await comm.send_to(text_data=json.dumps({"value": 1, "ts": 42.0}))
    await receive(comm)
    sample = await receive(viewer)
    assert (sample["seq"], sample["value"], sample["ts"]) == (1, 1, 42.0)
    await comm.disconnect()
    await viewer.disconnect()


async def test_a_poison_frame_that_slips_past_validation_is_refused_alone(globex_feed, monkeypatch):
    """If validation ever lets through a value the statistics cannot take, the
    writer refuses that frame alone: the ones before and after it are acked."""
    monkeypatch.setattr("streams.services.NUMERIC_VALUE_LIMIT", math.inf)
    comm = publisher(globex_feed.feed.uuid, bearer=globex_feed.token)
    await comm.connect()
    frames = [
        {"value": 1},
        {"values": [1e200, -1e200]},
        {"value": 2},
        {"value": 1e308},
        {"value": 3},
    ]
    for frame in frames:
        await comm.send_to(text_data=json.dumps(frame))
    replies = [await receive(comm) for _ in frames]
    assert [r.get("seq", r.get("error")) for r in replies] == [1, "bad_value", 2, "bad_value", 3]
    assert await persisted(globex_feed.feed) == [(1, 1.0), (2, 2.0), (3, 3.0)]
    await comm.disconnect()


async def test_the_attacker_of_a_wedged_feed_gets_bad_value_and_a_neighbour_is_acked(
    acme_feed, globex_feed
):
    await database_sync_to_async(wedge_with_1e308)(globex_feed.feed)
    attacker = publisher(globex_feed.feed.uuid, bearer=globex_feed.token)
    neighbour = publisher(acme_feed.feed.uuid, bearer=acme_feed.token)
    await attacker.connect()
    await neighbour.connect()
    for value in range(20):  # interleaved, so that they share the writer's batches
        await attacker.send_to(text_data=json.dumps({"value": value}))
        await neighbour.send_to(text_data=json.dumps({"value": value % 2}))
    refused = [await receive(attacker) for _ in range(20)]
    acks = [await receive(neighbour) for _ in range(20)]
    assert {r["error"] for r in refused} == {"bad_value"}
    assert "recomputestats" in refused[0]["message"]
    assert [a["seq"] for a in acks] == list(range(1, 21))
    await attacker.disconnect()
    await neighbour.disconnect()


async def test_a_database_failure_still_answers_every_frame_unavailable(acme_feed, monkeypatch):
    def database_away(**_):
        raise OperationalError("connection refused")

    monkeypatch.setattr("streams.services.samples_append_many", database_away)
    comm = publisher(acme_feed.feed.uuid, bearer=acme_feed.token)
    await comm.connect()
    for value in [1, 0, 1]:
        await comm.send_to(text_data=json.dumps({"value": value}))
    replies = [await receive(comm) for _ in range(3)]
    assert [r["error"] for r in replies] == ["unavailable"] * 3
    await comm.disconnect()
