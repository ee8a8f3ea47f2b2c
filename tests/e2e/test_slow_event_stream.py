"""A Server-Sent Events reader that stops reading is bounded by bytes, not frames.

Past WEBSOCKET_MAX_PENDING_BYTES waiting for it (queued plus unsent by the
server), its stream ends with an ``error`` event (``too_slow``); it resumes
with Last-Event-ID exactly where it left off.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import time

import psutil
import pytest
import websockets

from tests.conftest import Daphne

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

BUDGET = 64 * 1024
SAMPLES = 20_000


def stalled_stream(server: Daphne, path: str, headers: dict[str, str]) -> http.client.HTTPResponse:
    """An event stream whose client reads the first event, then nothing (a tiny receive buffer)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", server.port))
    connection.sock = sock
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    assert response.status == 200
    return response


def events_of(body: bytes) -> list[tuple[str, str | None, dict]]:
    """(event name, id, data) of each complete event."""
    events = []
    for block in body.decode().split("\n\n"):
        name, event_id, data = "message", None, None
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("id: "):
                event_id = line[len("id: ") :]
            elif line.startswith("data: "):
                data = json.loads(line[len("data: ") :])
        if data is not None:
            events.append((name, event_id, data))
    return events


def test_a_stalled_event_stream_ends_with_too_slow_and_resumes_from_its_last_id(acme_feed):
    server = Daphne(
        WEBSOCKET_MAX_PENDING_BYTES=str(BUDGET),
        QUOTA_SAMPLES_PER_SECOND="1000000",
        FEED_REPLAY_LIMIT="100000",
    ).start()
    feed, token = acme_feed.feed, acme_feed.token
    path = f"/feeds/{feed.uuid}/events/?key={feed.share_key}"
    try:
        stream = stalled_stream(server, path, {})
        rss_before = psutil.Process(server.process.pid).memory_info().rss

        async def publish():
            url = f"{server.ws}/ws/feeds/{feed.uuid}/publish/"
            async with websockets.connect(
                url, additional_headers={"Authorization": f"Bearer {token}"}
            ) as publisher:
                for _ in range(SAMPLES // 1000):
                    await publisher.send(json.dumps({"values": [1, 0] * 500}))
                    assert json.loads(await publisher.recv())["type"] == "ack"

        asyncio.run(publish())
        time.sleep(1)
        rss_growth = psutil.Process(server.process.pid).memory_info().rss - rss_before
        body = stream.read()  # the whole stream: it ended (else this times out)
        events = events_of(body)
        last_name, _, last_data = events[-1]
        ids = [int(event_id) for _, event_id, data in events if data["type"] == "sample"]

        resumed = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        resumed.request("GET", path, headers={"Last-Event-ID": str(ids[-1])})
        response = resumed.getresponse()
        first_samples = []
        while len(first_samples) < 3:
            line = response.readline()
            if line.startswith(b"data: "):
                frame = json.loads(line[len(b"data: ") :])
                if frame["type"] == "sample":
                    first_samples.append(frame["seq"])
        resumed.close()
    finally:
        server.stop()

    assert (last_name, last_data["type"], last_data["error"]) == ("error", "error", "too_slow")
    assert ids == list(range(ids[0], ids[-1] + 1))  # what it got, it got in order
    assert ids[-1] < SAMPLES  # it fell behind and was cut off before the end
    assert first_samples == [ids[-1] + 1, ids[-1] + 2, ids[-1] + 3]
    # What waited for it stayed near the budget, far from the 4+ MB published.
    assert rss_growth < 32 * 2**20, f"server grew {rss_growth / 2**20:.1f} MiB"
    print(
        f"stalled reader: cut off at seq {ids[-1]} of {SAMPLES}; RSS +{rss_growth / 2**20:.1f} MiB"
    )
