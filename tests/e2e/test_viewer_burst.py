"""A burst of viewers against the real server: the one Redis pool makes it wait, not fail.

Before the runtime (streamsite/runtime.py), presence, the hub, slots and the
metrics each had a Redis client with redis-py's default pool of 100
connections: a burst failed with "Too many connections" (the issue's bench:
presence on arrival; here: when the 1,000 left at once, 813 slot releases and
732 presence leaves), and presence fails open, so the counts were wrong until
the lost entries expired (45 s).
"""

from __future__ import annotations

import asyncio
import json
import os
import time

import pytest
import websockets

from streamsite import presence
from tests.conftest import Daphne

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# 1,000 viewers as the issue measured them; STREAMSITE_BURST_VIEWERS sizes it down.
VIEWERS = int(os.environ.get("STREAMSITE_BURST_VIEWERS", "1000"))
AT_A_TIME = 100
REDIS_TROUBLE = ("Too many connections", "No connection available", "presence:", "Traceback")


def test_viewers_arriving_100_at_a_time_log_no_redis_error_and_are_all_counted(acme_feed, tmp_path):
    feed = acme_feed.feed
    log_path = tmp_path / "server.log"
    server = Daphne(
        log_path=log_path,
        MAX_CONNECTIONS_PER_SHARE_KEY=str(VIEWERS + 10),
        MAX_CONNECTIONS_PER_ADDRESS=str(VIEWERS + 10),
    ).start()
    url = f"{server.ws}/ws/feeds/{feed.uuid}/?key={feed.share_key}"

    async def viewer() -> tuple[websockets.ClientConnection, dict]:
        socket = await websockets.connect(url, open_timeout=60, ping_interval=None)
        async with asyncio.timeout(60):
            return socket, json.loads(await socket.recv())

    async def scenario() -> tuple[list[dict], dict, float, int]:
        sockets: list[websockets.ClientConnection] = []
        hellos: list[dict] = []
        started = time.monotonic()
        try:
            for _ in range(0, VIEWERS, AT_A_TIME):
                wave = await asyncio.gather(*(viewer() for _ in range(AT_A_TIME)))
                sockets += [socket for socket, _ in wave]
                hellos += [hello for _, hello in wave]
            elapsed = time.monotonic() - started
            last_socket, last_hello = await viewer()
            sockets.append(last_socket)
        finally:
            async with asyncio.timeout(60):
                await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
        # All left at once: each leave must reach Redis (a lost one lingers for 45 s).
        group = f"feed.{feed.uuid}"
        for _ in range(150):  # up to 30 s
            left = await asyncio.to_thread(presence.watching_count, group)
            if left == 0:
                break
            await asyncio.sleep(0.2)
        return hellos, last_hello, elapsed, left

    try:
        hellos, last, elapsed, left = asyncio.run(scenario())
    finally:
        server.stop()
    log = log_path.read_text(errors="replace")
    trouble = [line for line in log.splitlines() if any(t in line for t in REDIS_TROUBLE)]
    print(
        f"{VIEWERS} viewers in {elapsed:.1f} s; last hello watching={last['watching']}; {left} left 30 s after all closed"
    )
    assert [h["type"] for h in hellos] == ["hello"] * VIEWERS
    assert not trouble, f"{len(trouble)} lines of Redis trouble, first: {trouble[:3]}"
    assert last["type"] == "hello" and last["watching"] == VIEWERS + 1
    assert max(h["watching"] for h in hellos) == VIEWERS
    assert left == 0
