"""The viewer socket /ws/feeds/<uuid>/, through the real ASGI app and real Redis."""

import asyncio
from unittest import mock

import pytest
from channels.db import database_sync_to_async

from streams.services import samples_append
from tests.conftest import session_cookie_for
from tests.streams.wsclient import communicator, quiet, receive, refused

pytestmark = pytest.mark.django_db(transaction=True)

append = database_sync_to_async(samples_append)
cookie_for = database_sync_to_async(session_cookie_for)


async def test_member_gets_hello_then_every_live_sample_in_order(acme_feed, world):
    await append(feed=acme_feed.feed, values=[(1, None), (0, None)])
    comm = communicator(f"/ws/feeds/{acme_feed.feed.uuid}/", cookie=await cookie_for(world.bob))
    connected, _ = await comm.connect()
    assert connected
    hello = await receive(comm)
    assert hello["type"] == "hello" and hello["last_seq"] == 2
    assert (hello["stats"]["alpha"], hello["stats"]["beta"]) == (3, 3)
    await append(feed=acme_feed.feed, values=[(1, 12.5)])
    await append(feed=acme_feed.feed, values=[(1, None)])
    first, second = await receive(comm), await receive(comm)
    assert (first["type"], first["seq"], first["value"], first["ts"]) == ("sample", 3, 1, 12.5)
    assert second["seq"] == 4
    assert second["stats"]["alpha"] + second["stats"]["beta"] == 4 + 4
    await comm.disconnect()


async def test_viewer_of_other_tenant_is_refused_even_with_the_exact_uuid(acme_feed, world):
    comm = communicator(f"/ws/feeds/{acme_feed.feed.uuid}/", cookie=await cookie_for(world.charlie))
    assert await refused(comm)


async def test_anonymous_viewer_without_key_is_refused(acme_feed):
    assert await refused(communicator(f"/ws/feeds/{acme_feed.feed.uuid}/"))


async def test_share_key_lets_a_script_without_origin_watch(acme_feed):
    comm = communicator(
        f"/ws/feeds/{acme_feed.feed.uuid}/?key={acme_feed.feed.share_key}", origin=None
    )
    connected, _ = await comm.connect()
    assert connected
    assert (await receive(comm))["type"] == "hello"
    await comm.disconnect()


async def test_wrong_share_key_is_refused(acme_feed):
    assert await refused(communicator(f"/ws/feeds/{acme_feed.feed.uuid}/?key=guess"))


async def test_another_tenants_share_key_does_not_open_this_feed(acme_feed, globex_feed):
    path = f"/ws/feeds/{acme_feed.feed.uuid}/?key={globex_feed.feed.share_key}"
    assert await refused(communicator(path))


@pytest.mark.parametrize(
    "origin",
    [b"http://evil.example", b"null", None, b"http://testserver.evil.example"],
)
async def test_session_does_not_authorise_a_foreign_or_missing_origin(acme_feed, world, origin):
    comm = communicator(
        f"/ws/feeds/{acme_feed.feed.uuid}/", cookie=await cookie_for(world.alice), origin=origin
    )
    assert await refused(comm)


async def test_foreign_page_may_use_a_share_key_only_from_an_allowed_origin(acme_feed):
    path = f"/ws/feeds/{acme_feed.feed.uuid}/?key={acme_feed.feed.share_key}"
    assert await refused(communicator(path, origin=b"https://partner.example"))
    acme_feed.feed.allowed_origins = "https://partner.example\n"
    await database_sync_to_async(acme_feed.feed.save)()
    comm = communicator(path, origin=b"https://partner.example")
    connected, _ = await comm.connect()
    assert connected
    await comm.disconnect()


async def test_since_replays_missed_samples_then_continues_live(acme_feed):
    await append(feed=acme_feed.feed, values=[(1, None)] * 5)
    comm = communicator(f"/ws/feeds/{acme_feed.feed.uuid}/?key={acme_feed.feed.share_key}&since=2")
    await comm.connect()
    assert (await receive(comm))["type"] == "hello"
    replayed = [(await receive(comm))["seq"] for _ in range(3)]
    assert replayed == [3, 4, 5]
    await append(feed=acme_feed.feed, values=[(0, None)])
    assert (await receive(comm))["seq"] == 6
    assert await quiet(comm, 0.3)
    await comm.disconnect()


async def test_since_beyond_what_is_kept_says_resync_and_sends_a_fresh_snapshot(acme_feed):
    await append(feed=acme_feed.feed, values=[(1, None)] * 3)
    await database_sync_to_async(lambda: acme_feed.feed.samples.filter(seq__lte=2).delete())()
    comm = communicator(f"/ws/feeds/{acme_feed.feed.uuid}/?key={acme_feed.feed.share_key}&since=0")
    await comm.connect()
    frames = [await receive(comm) for _ in range(2)]
    assert frames[0]["type"] == "hello"
    # The first hello is followed by the resync and a fresh hello.
    resync = frames[1]
    assert resync["type"] == "resync" and resync["oldest_seq"] == 3
    fresh = await receive(comm)
    assert fresh["type"] == "hello" and fresh["last_seq"] == 3
    await comm.disconnect()


async def test_malformed_since_gets_an_error_frame(acme_feed):
    comm = communicator(
        f"/ws/feeds/{acme_feed.feed.uuid}/?key={acme_feed.feed.share_key}&since=abc"
    )
    await comm.connect()
    assert (await receive(comm))["error"] == "bad_frame"
    output = await comm.receive_output(timeout=2)
    assert output["type"] == "websocket.close"


async def test_a_gap_in_live_events_is_filled_from_the_database(acme_feed):
    """A pub/sub message can be lost (Redis restarting); the viewer must not skip samples."""
    comm = communicator(f"/ws/feeds/{acme_feed.feed.uuid}/?key={acme_feed.feed.share_key}")
    await comm.connect()
    await receive(comm)
    # Written without a broadcast: as if the pub/sub message had been lost.
    with mock.patch("streamsite.hub.publish_many"):
        await append(feed=acme_feed.feed, values=[(1, None), (0, None)])
    await append(feed=acme_feed.feed, values=[(1, None)])
    seqs = [(await receive(comm))["seq"] for _ in range(3)]
    assert seqs == [1, 2, 3]
    await comm.disconnect()


async def test_many_viewers_each_get_every_sample_once(acme_feed):
    comms = [
        communicator(f"/ws/feeds/{acme_feed.feed.uuid}/?key={acme_feed.feed.share_key}")
        for _ in range(20)
    ]
    for comm in comms:
        await comm.connect()
        await receive(comm)
    await append(feed=acme_feed.feed, values=[(1, None)] * 3)
    await append(feed=acme_feed.feed, values=[(0, None)] * 2)
    results = await asyncio.gather(*[_seqs(comm, 5) for comm in comms])
    assert all(seqs == [1, 2, 3, 4, 5] for seqs in results)
    for comm in comms:
        await comm.disconnect()


async def _seqs(comm, count):
    return [(await receive(comm))["seq"] for _ in range(count)]
