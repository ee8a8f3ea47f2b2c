"""Exactly-once publishing: a frame whose id the feed already stored is acked, not stored again."""

import json
import threading
import time

import pytest
from channels.db import database_sync_to_async
from django.db import close_old_connections
from django.urls import reverse

from streams import services
from streams.models import Feed, PublishedId, Sample
from streams.services import (
    PUBLISH_ID_WINDOW,
    SampleRejected,
    publish_frame_parse,
    samples_append,
    samples_append_many,
)
from tenants import quotas
from tests.streams.test_publish_consumer import publisher
from tests.streams.wsclient import receive


def stored(feed):
    return list(Sample.objects.filter(feed=feed).order_by("seq").values_list("seq", "value"))


def remembered(feed):
    """The feed's ids, and its counter of them (which max_stored_bytes reads)."""
    feed = Feed.objects.get(pk=feed.pk)
    rows = dict(PublishedId.objects.filter(feed=feed).values_list("publish_id", "seq"))
    assert feed.remembered_ids == len(rows)
    return rows


@pytest.mark.django_db
def test_a_resent_frame_is_acked_with_its_original_seq_and_not_stored_again(acme_feed):
    feed = acme_feed.feed
    first = samples_append(feed=feed, values=[(1, None)], ids=["p-1"])
    samples_append(feed=feed, values=[(0, None)], ids=["p-2"])
    again = samples_append(feed=feed, values=[(1, None)], ids=["p-1"])
    assert list(again) == [] and again.seqs == [1] and again.duplicates == [0]
    assert first.ack(values_frame=False) == {"type": "ack", "seq": 1}
    assert again.ack(values_frame=False) == {"type": "ack", "seq": 1, "duplicate": True}
    assert stored(feed) == [(1, 1), (2, 0)]
    feed.refresh_from_db()
    assert feed.last_seq == 2 and feed.stats == {"n": 2, "successes": 1}  # counted once
    assert remembered(feed) == {"p-1": 1, "p-2": 2}


@pytest.mark.django_db
def test_the_second_copy_of_an_id_in_one_batch_is_a_duplicate_of_the_first(acme_feed):
    feed = acme_feed.feed
    outcomes = samples_append_many(
        writes=[
            (feed, [(1, None)], ["x"]),
            (feed, [(0, None)], ["x"]),  # another socket resending the same frame
            (feed, [(0, None)], ["y"]),
            (feed, [(1, None)], None),  # no id: always stored
        ]
    )
    assert [(o.seqs, o.duplicates) for o in outcomes] == [
        ([1], []), ([1], [0]), ([2], []), ([3], []),
    ]  # fmt: skip
    assert stored(feed) == [(1, 1), (2, 0), (3, 1)]
    assert remembered(feed) == {"x": 1, "y": 2}


@pytest.mark.django_db
def test_a_values_frame_stores_only_its_new_ids_in_order_and_says_which_were_duplicates(
    globex_feed,
):
    feed = globex_feed.feed
    samples_append(feed=feed, values=[(10.0, None), (20.0, None)], ids=["a", "b"])
    mixed = samples_append(
        feed=feed, values=[(20.0, None), (30.0, None), (10.0, None), (40.0, None)],
        ids=["b", "c", "a", "d"],
    )  # fmt: skip
    assert mixed.ack(values_frame=True) == {
        "type": "ack", "seq": 4, "duplicate": False, "seqs": [2, 3, 1, 4], "duplicates": [0, 2],
    }  # fmt: skip
    assert stored(feed) == [(1, 10.0), (2, 20.0), (3, 30.0), (4, 40.0)]
    feed.refresh_from_db()
    assert feed.stats["n"] == 4 and feed.stats["mean"] == 25.0
    whole = samples_append(feed=feed, values=[(30.0, None), (40.0, None)], ids=["c", "d"])
    assert whole.ack(values_frame=True) == {
        "type": "ack", "seq": 4, "duplicate": True, "seqs": [3, 4], "duplicates": [0, 1],
    }  # fmt: skip


@pytest.mark.django_db
def test_the_same_id_on_another_feed_is_not_a_duplicate(acme_feed, globex_feed):
    outcomes = samples_append_many(
        writes=[
            (acme_feed.feed, [(1, None)], ["shared"]),
            (globex_feed.feed, [(5.0, None)], ["shared"]),
        ]
    )
    assert [(o.seqs, o.duplicates) for o in outcomes] == [([1], []), ([1], [])]
    assert stored(acme_feed.feed) == [(1, 1)] and stored(globex_feed.feed) == [(1, 5.0)]


@pytest.mark.django_db
def test_a_refused_frame_leaves_no_id_behind_and_its_neighbours_commit(acme_feed, globex_feed):
    outcomes = samples_append_many(
        writes=[
            (acme_feed.feed, [(1, None)], ["v-1"]),
            (globex_feed.feed, [(1.0, None), (1e200, None)], ["poison-1", "poison-2"]),
            (acme_feed.feed, [(1, None)], ["v-1"]),
            (acme_feed.feed, [(0, None)], ["v-2"]),
        ]
    )
    assert isinstance(outcomes[1], SampleRejected) and outcomes[1].code == "bad_value"
    assert [(o.seqs, o.duplicates) for i, o in enumerate(outcomes) if i != 1] == [
        ([1], []), ([1], [0]), ([2], []),
    ]  # fmt: skip
    assert remembered(globex_feed.feed) == {}
    # Corrected and sent again with the same ids, it is stored: nothing was remembered.
    fixed = samples_append(
        feed=globex_feed.feed, values=[(1.0, None), (2.0, None)], ids=["poison-1", "poison-2"]
    )
    assert fixed.seqs == [1, 2] and not fixed.duplicates


@pytest.mark.django_db
def test_ids_are_written_frame_by_frame_when_the_database_refuses_a_row(acme_feed, globex_feed):
    Sample.objects.create(feed=globex_feed.feed, seq=1, value=0.0, ts=1.0, stats_json="{}")
    outcomes = samples_append_many(
        writes=[
            (acme_feed.feed, [(1, None)], ["a"]),
            (globex_feed.feed, [(3.0, None)], ["g"]),  # its insert breaks (feed, seq)
            (acme_feed.feed, [(1, None)], ["a"]),
        ]
    )
    assert isinstance(outcomes[1], SampleRejected)
    assert (outcomes[0].seqs, outcomes[2].seqs, outcomes[2].duplicates) == ([1], [1], [0])
    assert remembered(acme_feed.feed) == {"a": 1} and remembered(globex_feed.feed) == {}


@pytest.mark.django_db(transaction=True)
def test_two_writers_racing_with_the_same_ids_store_each_sample_once(acme_feed):
    """As two Daphne processes would, when a producer reconnects to another one while
    its old connection's frames are still being written."""
    count, errors, outcomes = 120, [], {}

    def write(name: str) -> None:
        try:
            outcomes[name] = [
                samples_append(feed=acme_feed.feed, values=[(n % 2, None)], ids=[f"r-{n}"])
                for n in range(count)
            ]
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=write, args=(name,)) for name in ("old", "new")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [s[1] for s in stored(acme_feed.feed)] == [n % 2 for n in range(count)]
    for n in range(count):  # both were told the one seq of each id, one of them as a duplicate
        old, new = outcomes["old"][n], outcomes["new"][n]
        assert old.seqs == new.seqs == [n + 1]
        assert sorted([old.duplicates, new.duplicates]) == [[], [0]]
    assert len(remembered(acme_feed.feed)) == count


@pytest.mark.django_db
def test_an_id_is_remembered_after_retention_pruned_its_sample_then_forgotten_after_24_h(
    acme_feed, monkeypatch
):
    feed = acme_feed.feed
    Feed.objects.filter(pk=feed.pk).update(retention_count=10)
    feed.refresh_from_db()
    monkeypatch.setattr(services, "_ids_pruned_at", {})

    def publish(first: int, count: int) -> None:
        for start in range(first, first + count, 100):
            samples_append(
                feed=feed,
                values=[(1, None)] * 100,
                ids=[f"s-{n}" for n in range(start, start + 100)],
            )

    publish(1, 600)  # seq 500 crossed: retention kept 491..500, then 501..600 came
    assert stored(feed)[0][0] == 491
    again = samples_append(feed=feed, values=[(1, None)], ids=["s-1"])
    assert again.duplicates == [0] and again.seqs == [1]
    assert len(remembered(feed)) == 600

    # A day later, the ids of pruned samples go at the next prune; those of
    # retained samples stay whatever their age.
    PublishedId.objects.filter(feed=feed).update(received=time.time() - PUBLISH_ID_WINDOW - 1)
    services._ids_pruned_at.clear()  # and more than a minute after the last prune of ids
    publish(601, 400)  # seq 1,000 crossed: prunes to 991..1000
    ids = remembered(feed)
    assert stored(feed)[0][0] == 991
    assert "s-1" not in ids and "s-590" not in ids
    assert {f"s-{n}" for n in range(601, 1001)} <= set(ids)  # younger than 24 h
    late = samples_append(feed=feed, values=[(0, None)], ids=["s-1"])
    assert late.seqs == [1001] and not late.duplicates


@pytest.mark.django_db
def test_new_ids_count_toward_max_stored_bytes_and_a_frame_over_it_is_refused_alone(
    world, acme_feed, globex_feed, monkeypatch
):
    monkeypatch.setattr(services, "_ids_pruned_at", {})
    # Room for three ids. The bytes left are reckoned once per batch (from what was
    # stored before it) and then spent by each new id of the batch, in order.
    world.acme.quota_max_stored_bytes = 3 * quotas.BYTES_PER_ID
    world.acme.save(update_fields=["quota_max_stored_bytes"])
    feed = Feed.objects.get(pk=acme_feed.feed.pk)
    outcomes = samples_append_many(
        writes=[(feed, [(1, None)], [f"q-{n}"]) for n in range(4)]
        + [
            (feed, [(0, None)], None),  # without an id: not counted, stored
            (feed, [(1, None)], ["q-0"]),  # a duplicate costs nothing: acked
            (globex_feed.feed, [(1.0, None)], ["q-9"]),  # another tenant's quota
        ]
    )
    refused = outcomes[3]
    assert isinstance(refused, SampleRejected)
    assert refused.frame()["error"] == "quota_exceeded"
    assert refused.frame()["limit"] == "max_stored_bytes" and refused.status == 413
    assert "ids" in refused.message
    assert [o.seqs for i, o in enumerate(outcomes) if i != 3] == [[1], [2], [3], [4], [1], [1]]
    assert stored(feed) == [(1, 1), (2, 1), (3, 1), (4, 0)]
    assert set(remembered(feed)) == {"q-0", "q-1", "q-2"}
    assert quotas.stored_bytes(world.acme) == 4 * quotas.BYTES_PER_SAMPLE + 3 * quotas.BYTES_PER_ID
    assert quotas.stored_bytes_left([world.acme.pk, world.globex.pk]) == {
        world.acme.pk: 3 * quotas.BYTES_PER_ID - quotas.stored_bytes(world.acme),
        world.globex.pk: quotas.limit_for(world.globex, "max_stored_bytes")
        - quotas.stored_bytes(world.globex),
    }
    # Now over it (its samples count too): new ids are refused, the rest goes on.
    later = samples_append_many(
        writes=[(feed, [(1, None)], ["q-3"]), (feed, [(1, None)], ["q-1"]), (feed, [(0, None)])]
    )
    assert isinstance(later[0], SampleRejected) and later[0].limit == "max_stored_bytes"
    assert (later[1].seqs, later[1].duplicates, later[2].seqs) == ([2], [0], [5])


@pytest.mark.parametrize(
    "frame",
    [
        {"value": 1, "id": ""},
        {"value": 1, "id": "x" * 65},
        {"value": 1, "id": 7},
        {"value": 1, "id": ["a"]},
        {"value": 1, "id": "nul\u0000"},
        {"value": 1, "id": "line\nbreak"},
        {"value": 1, "id": "\ud800"},  # a lone surrogate: not UTF-8, no database takes it
        {"value": 1, "ids": ["a"]},
        {"values": [1], "id": "a"},
        {"values": [1, 0], "ids": ["a"]},
        {"values": [1, 0], "ids": ["a", "a"]},
        {"values": [1, 0], "ids": "ab"},
        {"values": [1, 0], "ids": ["a", 2]},
    ],
)
def test_a_bad_id_is_a_bad_frame(frame):
    with pytest.raises(SampleRejected) as info:
        publish_frame_parse("binary", frame)
    assert info.value.code == "bad_frame" and "id" in info.value.message


def test_good_ids_are_kept_as_given():
    assert publish_frame_parse("binary", {"value": 1, "id": "é" * 64}).ids == ["é" * 64]
    assert publish_frame_parse("binary", {"values": [1, 0], "ids": ["a", "b"]}).ids == ["a", "b"]
    assert publish_frame_parse("binary", {"value": 1, "id": None}).ids is None
    assert publish_frame_parse("binary", 1).ids is None


# -- over the wire ---------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_the_publish_socket_acks_duplicates_with_the_original_seq(acme_feed):
    comm = publisher(acme_feed.feed.uuid, bearer=acme_feed.token)
    assert (await comm.connect())[0]
    for frame in [
        {"value": 1, "id": "w-1"},
        {"value": 1, "id": "w-1"},
        {"values": [1, 0], "ids": ["w-1", "w-2"]},
        {"value": 1, "id": ""},
        {"values": [0, 0], "ids": ["w-2", "w-3"]},
    ]:
        await comm.send_to(text_data=json.dumps(frame))
    answers = [await receive(comm) for _ in range(5)]
    assert answers[:3] == [
        {"type": "ack", "seq": 1},
        {"type": "ack", "seq": 1, "duplicate": True},
        {"type": "ack", "seq": 2, "duplicate": False, "seqs": [1, 2], "duplicates": [0]},
    ]
    assert answers[3]["error"] == "bad_frame"
    assert answers[4] == {
        "type": "ack", "seq": 3, "duplicate": False, "seqs": [2, 3], "duplicates": [0],
    }  # fmt: skip
    assert await database_sync_to_async(stored)(acme_feed.feed) == [(1, 1), (2, 0), (3, 0)]
    await comm.disconnect()


@pytest.mark.django_db
def test_http_publish_of_a_duplicate_is_acked_with_the_original_seq(client, acme_feed):
    def post(body):
        return client.post(
            reverse("feed-publish", args=[acme_feed.feed.uuid]),
            data=json.dumps(body),
            content_type="application/json",
            headers={"Authorization": f"Bearer {acme_feed.token}"},
        )

    assert post({"value": 1, "id": "h-1"}).json() == {"type": "ack", "seq": 1}
    again = post({"value": 1, "id": "h-1"})
    assert again.status_code == 200
    assert again.json() == {"type": "ack", "seq": 1, "duplicate": True}
    bad = post({"value": 1, "id": "h" * 65})
    assert bad.status_code == 400 and bad.json()["error"] == "bad_frame"
    assert stored(acme_feed.feed) == [(1, 1)]


@pytest.mark.django_db
def test_http_publish_over_the_ids_quota_is_a_413_naming_it(client, world, acme_feed):
    world.acme.quota_max_stored_bytes = 0
    world.acme.save(update_fields=["quota_max_stored_bytes"])
    response = client.post(
        reverse("feed-publish", args=[acme_feed.feed.uuid]),
        data=json.dumps({"value": 1, "id": "over"}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {acme_feed.token}"},
    )
    assert response.status_code == 413
    assert response.json()["error"] == "quota_exceeded"
    assert response.json()["limit"] == "max_stored_bytes"
    assert stored(acme_feed.feed) == []
