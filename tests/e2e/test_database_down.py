"""The database away: clear refusals, no HTTP 500, and runproducers waits it out."""

import asyncio
import json
import signal
import subprocess
import sys
import time

import pytest
import websockets

from tests.conftest import ROOT, Daphne, server_env

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
NOWHERE = "postgres://postgres@127.0.0.1:1/streamsite"  # nothing listens on port 1


def test_a_handshake_with_the_database_away_is_answered_unavailable(acme_feed):
    server = Daphne(DATABASE_URL=NOWHERE).start()
    feed = acme_feed.feed

    async def scenario():
        url = f"{server.ws}/ws/feeds/{feed.uuid}/?key={feed.share_key}"
        async with websockets.connect(url) as socket:
            frame = json.loads(await asyncio.wait_for(socket.recv(), 10))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(socket.recv(), 10)
        return frame, closed.value.rcvd.code

    try:
        frame, code = asyncio.run(scenario())
        assert (frame["type"], frame["error"], code) == ("error", "unavailable", 1011)

        # A signed-in browser's handshake (session lookup) is refused, not a 500.
        async def with_cookie():
            with pytest.raises(websockets.InvalidStatus) as refused:
                await websockets.connect(
                    f"{server.ws}/ws/feeds/{feed.uuid}/",
                    additional_headers={"Cookie": "sessionid=" + "a" * 32, "Origin": server.http},
                )
            return refused.value.response.status_code

        assert asyncio.run(with_cookie()) == 403
        assert server.process.poll() is None
    finally:
        server.stop()


def test_runproducers_keeps_running_while_the_database_is_away():
    supervisor = subprocess.Popen(
        [sys.executable, "manage.py", "runproducers"],
        cwd=ROOT,
        env=server_env(DATABASE_URL=NOWHERE),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(4)
    assert supervisor.poll() is None, "runproducers exited when the database went away"
    supervisor.send_signal(signal.SIGTERM)
    _, errors = supervisor.communicate(timeout=20)
    assert supervisor.returncode == 0
    assert "database unavailable" in errors and "Traceback" not in errors
