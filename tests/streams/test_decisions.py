"""Handshakes reuse access answers (streamsite.control.Decisions), and stay exact.

A reconnect storm asks the same question thousands of times: may this share
key (or this user) watch this feed? It is checked once; any change in the
tenant (a revoked key, a removed member, a deleted feed) forgets the answer,
so the next handshake is checked afresh and the open ones are closed.
"""

import asyncio

import pytest
from channels.db import database_sync_to_async

from streams import access
from streams.services import feed_share_key_revoke, feed_share_key_rotate
from streamsite.sharedread import SharedRead
from tenants.models import Membership
from tenants.services import membership_remove
from tests.conftest import session_cookie_for
from tests.streams.test_revocation import closed_with_revoked, viewer
from tests.streams.wsclient import communicator, refused

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def checks(monkeypatch):
    """How many times a feed's access was decided from the database."""
    calls = []
    real = access.feed_access

    def counted(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(access, "feed_access", counted)
    return calls


async def close_all(comms):
    for comm in comms:
        await comm.disconnect()


async def test_a_burst_of_viewers_with_one_key_is_checked_once(acme_feed, checks):
    feed = acme_feed.feed
    path = f"/ws/feeds/{feed.uuid}/?key={feed.share_key}"
    first = await viewer(path)
    decided = len(checks)  # the check, and the one after joining the control group
    assert decided == 2
    rest = await asyncio.gather(*(viewer(path) for _ in range(20)))
    assert len(checks) == decided
    await close_all([first, *rest])


async def test_after_a_revocation_the_old_key_is_refused_and_its_viewers_closed(acme_feed, checks):
    feed = acme_feed.feed
    old = f"/ws/feeds/{feed.uuid}/?key={feed.share_key}"
    watching = await viewer(old)
    await viewer(old)  # the answer is now kept
    new_key = await database_sync_to_async(feed_share_key_rotate)(feed=feed)
    assert await closed_with_revoked(watching)
    # The rotation forgot the kept answer: the old key is checked again, and refused.
    before = len(checks)
    assert await refused(communicator(old))
    assert len(checks) > before
    fresh = await viewer(f"/ws/feeds/{feed.uuid}/?key={new_key}")
    await fresh.disconnect()


async def test_a_revocation_between_two_handshakes_is_never_missed(acme_feed):
    # Many handshakes with the key, and the key revoked while they arrive: each
    # one either is refused or is closed as revoked; none stays open.
    feed = acme_feed.feed
    path = f"/ws/feeds/{feed.uuid}/?key={feed.share_key}"
    await viewer(path)

    async def one():
        comm = communicator(path)
        connected, _ = await comm.connect(timeout=5)
        if not connected:
            return "refused"
        return "closed" if await closed_with_revoked(comm) else "open"

    attempts = [asyncio.create_task(one()) for _ in range(30)]
    await asyncio.sleep(0.05)
    await database_sync_to_async(feed_share_key_revoke)(feed=feed)
    outcomes = await asyncio.gather(*attempts)
    assert "open" not in outcomes


async def test_a_stranger_is_refused_every_time(acme_feed, world, checks):
    feed = acme_feed.feed
    cookie = await database_sync_to_async(session_cookie_for)(world.charlie)
    for _ in range(3):
        assert await refused(communicator(f"/ws/feeds/{feed.uuid}/", cookie=cookie))
        assert await refused(communicator(f"/ws/feeds/{feed.uuid}/?key=guessed"))
    # Refusals are never kept: each was decided from the database.
    assert len(checks) == 6


async def test_a_removed_member_is_refused_at_the_next_handshake(acme_feed, world):
    feed = acme_feed.feed
    cookie = await database_sync_to_async(session_cookie_for)(world.bob)
    path = f"/ws/feeds/{feed.uuid}/"
    bob = await viewer(path, cookie=cookie)
    await (await viewer(path, cookie=cookie)).disconnect()  # kept
    membership = await database_sync_to_async(Membership.objects.select_related("tenant").get)(
        user=world.bob, tenant=world.acme
    )
    await database_sync_to_async(membership_remove)(membership=membership)
    assert await closed_with_revoked(bob)
    assert await refused(communicator(path, cookie=cookie))


async def test_deleting_a_feed_closes_its_viewers_and_refuses_its_key(acme_feed):
    feed = acme_feed.feed
    path = f"/ws/feeds/{feed.uuid}/?key={feed.share_key}"
    watching = await viewer(path)
    await database_sync_to_async(feed.delete)()
    assert await closed_with_revoked(watching)
    assert await refused(communicator(path))


async def test_a_shared_read_serves_only_callers_who_asked_before_it_started():
    started: list[int] = []
    gate = asyncio.Event()

    async def read(key):
        started.append(key)
        await gate.wait()
        return len(started)

    async def settle():
        for _ in range(5):
            await asyncio.sleep(0)

    shared = SharedRead(read)
    first = asyncio.create_task(shared(1))
    await settle()
    assert started == [1]
    # Asked while that read runs: it may have read before they asked, so they
    # share the next one, one read for all ten.
    late = [asyncio.create_task(shared(1)) for _ in range(10)]
    other = asyncio.create_task(shared(2))  # another key reads at once
    await settle()
    assert started == [1, 2]
    gate.set()
    assert await first == 2
    assert await asyncio.gather(*late) == [3] * 10
    assert started == [1, 2, 1]
    assert await other == 2
