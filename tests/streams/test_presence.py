"""How many are watching: counted across connections, broadcast to viewers."""

import pytest

from streams.events import feed_group
from streamsite.presence import watching
from tests.streams.wsclient import communicator, receive

pytestmark = pytest.mark.django_db(transaction=True)


async def test_hello_counts_the_viewer_and_others_hear_of_newcomers(acme_feed):
    path = f"/ws/feeds/{acme_feed.feed.uuid}/?key={acme_feed.feed.share_key}"
    first = communicator(path)
    await first.connect()
    assert (await receive(first))["watching"] == 1
    second = communicator(path)
    await second.connect()
    assert (await receive(second))["watching"] == 2
    # The first viewer is told within a second or two.
    frame = await receive(first, presence=True)
    while frame["watching"] != 2:
        frame = await receive(first, presence=True)
    await second.disconnect()
    frame = await receive(first, presence=True)
    while frame["watching"] != 1:
        frame = await receive(first, presence=True)
    await first.disconnect()


async def test_operators_see_who_is_watching_without_the_key(acme_feed):
    from channels.db import database_sync_to_async

    comm = communicator(f"/ws/feeds/{acme_feed.feed.uuid}/?key={acme_feed.feed.share_key}")
    await comm.connect()
    await receive(comm)
    entries = await database_sync_to_async(watching)(feed_group(acme_feed.feed.uuid))
    assert [(e["user"], e["via"]) for e in entries] == [(None, "share key")]
    assert acme_feed.feed.share_key not in repr(entries)
    await comm.disconnect()
    assert await database_sync_to_async(watching)(feed_group(acme_feed.feed.uuid)) == []
