"""Revoking a key, a token or a membership closes the connections that relied on it."""

import json

import pytest
from channels.db import database_sync_to_async

from streams.services import (
    feed_share_key_revoke,
    feed_share_key_rotate,
    producer_set_enabled,
    producer_token_revoke,
    producer_token_rotate,
)
from tenants.models import Membership
from tenants.services import membership_remove
from tests.conftest import session_cookie_for
from tests.streams.wsclient import communicator, quiet, receive

pytestmark = pytest.mark.django_db(transaction=True)


async def closed_with_revoked(comm) -> bool:
    """The connection gets a `revoked` error and closes with 4403 within a few seconds."""
    while True:
        output = await comm.receive_output(timeout=5)
        if output["type"] == "websocket.close":
            return output.get("code") == 4403
        frame = json.loads(output["text"])
        if frame["type"] == "error":
            assert frame["error"] == "revoked"


async def still_open(comm, seconds: float = 1.0) -> bool:
    """Nothing but presence frames for a while: the connection was left alone."""
    return await quiet(comm, seconds)


async def viewer(path, **kwargs):
    comm = communicator(path, **kwargs)
    connected, _ = await comm.connect()
    assert connected
    await receive(comm)
    return comm


@pytest.mark.parametrize("change", [feed_share_key_revoke, feed_share_key_rotate])
async def test_share_key_viewers_are_disconnected_when_the_key_changes(acme_feed, world, change):
    feed = acme_feed.feed
    cookie = await database_sync_to_async(session_cookie_for)(world.bob)
    by_key = await viewer(f"/ws/feeds/{feed.uuid}/?key={feed.share_key}")
    member = await viewer(f"/ws/feeds/{feed.uuid}/", cookie=cookie)
    await database_sync_to_async(change)(feed=feed)
    assert await closed_with_revoked(by_key)
    # The member did not use the key and keeps watching.
    assert await still_open(member)
    await member.disconnect()


async def test_removing_a_membership_disconnects_that_user_only(acme_feed, world):
    feed = acme_feed.feed
    cookie = database_sync_to_async(session_cookie_for)
    bob = await viewer(f"/ws/feeds/{feed.uuid}/", cookie=await cookie(world.bob))
    alice = await viewer(f"/ws/feeds/{feed.uuid}/", cookie=await cookie(world.alice))
    membership = await database_sync_to_async(Membership.objects.select_related("tenant").get)(
        user=world.bob, tenant=world.acme
    )
    await database_sync_to_async(membership_remove)(membership=membership)
    assert await closed_with_revoked(bob)
    assert await still_open(alice)
    await alice.disconnect()


@pytest.mark.parametrize(
    "change",
    [
        producer_token_rotate,
        producer_token_revoke,
        lambda producer: producer_set_enabled(producer=producer, enabled=False),
    ],
)
async def test_publishers_are_disconnected_when_their_token_goes(acme_feed, change):
    comm = communicator(
        f"/ws/feeds/{acme_feed.feed.uuid}/publish/",
        origin=None,
        headers=[(b"authorization", f"Bearer {acme_feed.token}".encode())],
    )
    assert (await comm.connect())[0]
    await database_sync_to_async(lambda: change(producer=acme_feed.producer))()
    assert await closed_with_revoked(comm)
