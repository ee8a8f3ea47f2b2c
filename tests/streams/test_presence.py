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


async def test_a_big_audience_hears_its_count_less_often(acme_feed, monkeypatch):
    # With one presence frame a second per viewer allowed (instead of 1,000), a
    # group of 3 hears its count at most every 3 s: the cost of presence stays
    # bounded however big the audience (10,000 viewers: every 10 s by default).
    import asyncio
    import json
    import time

    from streamsite import presence

    async def count_reaches(comm, wanted: int) -> float:
        """When a presence frame with ``wanted`` arrived (read off the output queue:
        the communicator's own receive gives up after 3 s)."""
        async with asyncio.timeout(15):
            while True:
                message = await comm.output_queue.get()
                frame = json.loads(message["text"])
                if frame["type"] == "presence" and frame["watching"] == wanted:
                    return time.monotonic()

    monkeypatch.setattr(presence, "PRESENCE_FRAMES_PER_SECOND", 1)
    path = f"/ws/feeds/{acme_feed.feed.uuid}/?key={acme_feed.feed.share_key}"
    viewers = []
    for _ in range(3):
        viewers.append(communicator(path))
        await viewers[-1].connect()
        await receive(viewers[-1])
    heard_three = await count_reaches(viewers[0], 3)
    viewers.append(communicator(path))
    await viewers[-1].connect()
    await receive(viewers[-1])
    heard_four = await count_reaches(viewers[0], 4)
    assert heard_four - heard_three >= 2.5
    for viewer in viewers:
        await viewer.disconnect()
