"""Hostile frames against the real server (Daphne, python -m streamsite.server).

Each scenario runs beside bystanders, a publisher and a viewer of the same feed
on the same server, busy all along: they must go on publishing and receiving
every sample, in order, whatever the hostile client does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.request

import psutil
import pytest
import websockets
from django.conf import settings
from django.contrib.auth import get_user_model

from documents.services import document_share_set
from tenants.models import Role
from tenants.services import membership_set
from tests.conftest import Daphne, password_hash, session_cookie_for
from tests.documents.conftest import tsv_of_size
from tests.e2e.clients import next_frame, next_sample

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def viewer_url(server: Daphne, feed, query: str = "") -> str:
    return f"{server.ws}/ws/feeds/{feed.uuid}/?key={feed.share_key}{query}"


def publish_url(server: Daphne, feed) -> str:
    return f"{server.ws}/ws/feeds/{feed.uuid}/publish/"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def closed_with(connection) -> int | None:
    """The close code the server sent (None: the connection dropped without one), frames skipped."""
    with contextlib.suppress(websockets.ConnectionClosed):
        async with asyncio.timeout(10):
            while True:
                await connection.recv()
    return connection.close_code if connection.protocol.close_rcvd is not None else None


def stops_growing(feed, *, within: float) -> bool:
    """True once the feed's last seq stays put for half a second, within ``within`` s."""
    deadline, last, steady_since = time.monotonic() + within, None, time.monotonic()
    while time.monotonic() < deadline:
        feed.refresh_from_db(fields=["last_seq"])
        if feed.last_seq != last:
            last, steady_since = feed.last_seq, time.monotonic()
        elif time.monotonic() - steady_since >= 0.5:
            return True
        time.sleep(0.1)
    return False


class Bystanders:
    """A publisher and a viewer of one feed, minding their own business all along.

    The publisher sends a sample every 20 ms and waits for each ack; the viewer
    collects every sample. ``still_served`` checks that acks keep coming and that
    the viewer has every acknowledged sample, in order, without a gap.
    """

    def __init__(self, server: Daphne, acme_feed) -> None:
        self.server, self.feed, self.token = server, acme_feed.feed, acme_feed.token
        self.acked: list[int] = []
        self.seen: list[int] = []

    async def __aenter__(self) -> Bystanders:
        self.viewer = await websockets.connect(viewer_url(self.server, self.feed))
        self.seen.append(json.loads(await self.viewer.recv())["last_seq"])
        self.publisher = await websockets.connect(
            publish_url(self.server, self.feed), additional_headers=bearer(self.token)
        )
        self.tasks = [asyncio.create_task(self._publish()), asyncio.create_task(self._watch())]
        await self.still_served()
        return self

    async def _publish(self) -> None:
        while True:
            await self.publisher.send(json.dumps({"value": 1}))
            async with asyncio.timeout(10):
                ack = json.loads(await self.publisher.recv())
            assert ack["type"] == "ack", ack
            self.acked.append(ack["seq"])
            await asyncio.sleep(0.02)

    async def _watch(self) -> None:
        while True:
            self.seen.append((await next_sample(self.viewer))["seq"])

    async def still_served(self) -> None:
        wanted = len(self.acked) + 2  # two more acks from now on
        async with asyncio.timeout(10):
            while len(self.acked) < wanted or self.seen[-1] < self.acked[wanted - 1]:
                for task in self.tasks:
                    if task.done():
                        task.result()  # a bystander failed: say how
                await asyncio.sleep(0.01)
        assert self.seen == list(range(self.seen[0], self.seen[-1] + 1)), "a gap"

    async def __aexit__(self, *exc_info) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.publisher.close()
        await self.viewer.close()


def test_publish_frame_over_the_limit_is_closed_1009(daphne, acme_feed):
    feed, limit = acme_feed.feed, settings.PUBLISH_MAX_BYTES

    async def scenario():
        async with Bystanders(daphne, acme_feed) as others:
            async with websockets.connect(
                publish_url(daphne, feed), additional_headers=bearer(acme_feed.token)
            ) as hostile:
                await hostile.send(json.dumps({"value": 1, "padding": "x" * limit}))
                error = json.loads(await hostile.recv())
                code = await closed_with(hostile)
            await others.still_served()
        return error, code

    error, code = asyncio.run(scenario())
    assert (error["type"], error["error"]) == ("error", "too_large")
    assert code == 1009


class PeakRSS(threading.Thread):
    """Samples a process's resident memory every millisecond until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.baseline = self.peak = self.process.memory_info().rss
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.001)

    def growth(self) -> int:
        self.stopped.set()
        self.join()
        return self.peak - self.baseline


def test_message_over_the_server_limit_is_closed_1009_without_being_buffered(daphne, acme_feed):
    feed = acme_feed.feed
    message = os.urandom(settings.DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE + 1024 * 1024)

    async def scenario():
        async with Bystanders(daphne, acme_feed) as others:
            hostile = await websockets.connect(
                publish_url(daphne, feed),
                additional_headers=bearer(acme_feed.token),
                compression=None,
            )
            memory = PeakRSS(daphne.process.pid)
            memory.start()
            with contextlib.suppress(websockets.ConnectionClosed, ConnectionError):
                await hostile.send(message)
            code = await closed_with(hostile)
            growth = memory.growth()
            await others.still_served()
        return code, growth

    code, growth = asyncio.run(scenario())
    assert code == 1009  # as soon as the header announced the length
    assert growth < len(message), f"the server grew by {growth:,} bytes"


def test_a_publisher_far_ahead_of_its_acks_is_closed_1013(daphne, acme_feed, globex_feed):
    # 1,000 frames of 1,000 samples each, sent without reading a single ack:
    # the server parses faster than it can store, and must not hold them all.
    # The flood comes from a neighbour tenant's producer: what it stores counts
    # against globex's samples-per-second quota, never against acme's bystanders
    # (a bystander of the flooding tenant itself may rightly be refused).
    feed, frame = globex_feed.feed, json.dumps({"values": [1] * 1000})

    async def scenario():
        async with Bystanders(daphne, acme_feed) as others:
            async with websockets.connect(
                publish_url(daphne, feed), additional_headers=bearer(globex_feed.token)
            ) as hostile:
                memory = PeakRSS(daphne.process.pid)
                memory.start()
                with contextlib.suppress(websockets.ConnectionClosed):
                    for _ in range(1000):
                        await hostile.send(frame)
                code = await closed_with(hostile)
                growth = memory.growth()
            await others.still_served()
        return code, growth

    code, growth = asyncio.run(scenario())
    assert code == 1013
    assert growth < 64 * 1024 * 1024, f"the server grew by {growth:,} bytes"
    # The cut-off publisher's unacknowledged frames are dropped, not written on
    # and on: the feed goes quiet at once (and the test database can be flushed).
    assert stops_growing(feed, within=5.0)


PUBLISH_FRAMES = {
    "not JSON": ("{value: 1}", "bad_json"),
    "truncated JSON": ('{"value": 1', "bad_json"),
    "nested too deep": ("[" * 5000 + "]" * 5000, "bad_json"),
    "a string": ('"1"', "bad_frame"),
    "a list": ("[1]", "bad_frame"),
    "no value": ('{"type": "sample"}', "bad_frame"),
    "values not a list": ('{"values": 1}', "bad_frame"),
    "value a string": ('{"value": "1"}', "bad_value"),
    "value true": ('{"value": true}', "bad_value"),
    "value null": ('{"value": null}', "bad_value"),
    "value a list": ('{"value": [1]}', "bad_value"),
    "value NaN": ('{"value": NaN}', "bad_value"),
    "value infinite": ('{"value": 1e999}', "bad_value"),
    "value too big for a float": ('{"value": 1' + "0" * 400 + "}", "bad_value"),
    "ts too big for a float": ('{"value": 1, "ts": 1' + "0" * 400 + "}", "bad_value"),
    "value not binary": ('{"value": 2}', "bad_value"),
    "values with a string": ('{"values": [1, "0"]}', "bad_value"),
    "binary frame": (b"\x00\x01", "bad_frame"),
}


def test_malformed_publish_frames_get_an_error_and_the_socket_stays_usable(daphne, acme_feed):
    feed = acme_feed.feed

    async def scenario():
        async with Bystanders(daphne, acme_feed) as others:
            async with websockets.connect(
                publish_url(daphne, feed), additional_headers=bearer(acme_feed.token)
            ) as hostile:
                answers = {}
                for name, (frame, _) in PUBLISH_FRAMES.items():
                    await hostile.send(frame)
                    answers[name] = json.loads(await hostile.recv())
                await hostile.send(json.dumps({"value": 0}))
                ack = json.loads(await hostile.recv())
            await others.still_served()
        return answers, ack

    answers, ack = asyncio.run(scenario())
    assert {name: a.get("error") for name, a in answers.items()} == {
        name: code for name, (_, code) in PUBLISH_FRAMES.items()
    }
    assert ack["type"] == "ack"


@pytest.mark.parametrize(
    "body, code",
    [(frame.encode(), code) for frame, code in PUBLISH_FRAMES.values() if isinstance(frame, str)]
    + [(b'{"value": "\xff\xfe"}', "bad_json")],
    ids=[name for name, (frame, _) in PUBLISH_FRAMES.items() if isinstance(frame, str)]
    + ["invalid UTF-8"],
)
def test_malformed_http_publish_bodies_get_a_400(daphne, acme_feed, body, code):
    request = urllib.request.Request(
        f"{daphne.http}/api/feeds/{acme_feed.feed.uuid}/samples/",
        data=body,
        headers={"Content-Type": "application/json", **bearer(acme_feed.token)},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400
    assert json.loads(refused.value.read())["error"] == code


DOCUMENT_FRAMES = {
    "not JSON": ("page 2", "bad_json"),
    "nested too deep": ("[" * 2000 + "]" * 2000, "bad_json"),
    "a list": ('[{"type": "page", "page_no": 2}]', "bad_frame"),
    "no type": ('{"page_no": 2}', "bad_frame"),
    "unknown type": ('{"type": "delete", "page_no": 2}', "bad_frame"),
    "page_no a string": ('{"type": "page", "page_no": "2"}', "bad_frame"),
    "page_no true": ('{"type": "page", "page_no": true}', "bad_frame"),
    "page_no null": ('{"type": "page", "page_no": null}', "bad_frame"),
    "page_no a fraction": ('{"type": "page", "page_no": 2.5}', "bad_frame"),
    "page_no a list": ('{"type": "page", "page_no": [2]}', "bad_frame"),
    "page_no huge": ('{"type": "page", "page_no": 1' + "0" * 400 + "}", "out_of_range"),
    "page_no zero": ('{"type": "page", "page_no": 0}', "out_of_range"),
    "text over 4096 characters": (json.dumps({"type": "page", "pad": "x" * 5000}), "too_large"),
    "binary frame that is no TSV": (b"\x00\x01\x02", "invalid_tsv"),
}


def test_malformed_document_frames_get_an_error_and_the_socket_stays_usable(
    daphne, acme_feed, acme_document
):
    document = document_share_set(document=acme_document, share="steer")
    url = f"{daphne.ws}/ws/documents/{document.uuid}/?key={document.share_key}"

    async def scenario():
        async with Bystanders(daphne, acme_feed) as others:
            async with websockets.connect(url) as hostile:
                assert (await next_frame(hostile))["type"] == "page"
                answers = {}
                for name, (frame, _) in DOCUMENT_FRAMES.items():
                    await hostile.send(frame)
                    answers[name] = await next_frame(hostile)
                await hostile.send(json.dumps({"type": "page", "page_no": 2}))
                page = await next_frame(hostile)
            await others.still_served()
        return answers, page

    answers, page = asyncio.run(scenario())
    assert {name: a.get("error") for name, a in answers.items()} == {
        name: code for name, (_, code) in DOCUMENT_FRAMES.items()
    }
    assert (page["type"], page["page_no"]) == ("page", 2)


def test_pipelined_uploads_are_read_no_faster_than_they_are_processed(
    daphne, acme_feed, acme_document
):
    # Each upload takes the server a good fraction of a second; sent back to back,
    # they used to pile up in memory. Now the server stops reading while one
    # largest message waits unread, so the client's sends wait too.
    document = document_share_set(document=acme_document, share="steer")
    url = f"{daphne.ws}/ws/documents/{document.uuid}/?key={document.share_key}"
    upload, count = tsv_of_size(settings.DOCUMENT_MAX_BYTES), 6

    async def scenario():
        async with Bystanders(daphne, acme_feed) as others:
            async with websockets.connect(url, compression=None) as hostile:
                uploaded = 0

                async def count_uploads():
                    nonlocal uploaded
                    while uploaded < count:
                        if (await next_frame(hostile))["type"] == "uploaded":
                            uploaded += 1

                counting = asyncio.create_task(count_uploads())
                for _ in range(count):
                    await hostile.send(upload)
                answered_when_sent = uploaded
                await counting
            await others.still_served()
        return answered_when_sent

    assert asyncio.run(scenario()) >= count - 4  # one in process, two unread, one in transit


def raw_websocket(server: Daphne, path: str, headers: dict[str, str]) -> socket.socket:
    """A WebSocket handshake by hand, for frames no client library would send."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{server.port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(4096)
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """One client-to-server frame (FIN, masked), payload under 126 bytes."""
    assert len(payload) < 126
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes((0x80 | opcode, 0x80 | len(payload))) + mask + masked


def close_code_of(sock: socket.socket) -> int | None:
    """Read server frames until a close frame (its code) or the end of the stream (None)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionError, TimeoutError):
            return None
        if not chunk:
            return None
        data += chunk
        while len(data) >= 2:
            opcode, length = data[0] & 0x0F, data[1] & 0x7F
            header = 2 + {126: 2, 127: 8}.get(length, 0)
            if len(data) < header:
                break
            if length >= 126:
                length = int.from_bytes(data[2:header], "big")
            if len(data) < header + length:
                break
            if opcode == 0x8:
                return int.from_bytes(data[header : header + 2], "big")
            data = data[header + length :]


def test_invalid_utf8_in_a_text_frame_is_closed_1007(daphne, acme_feed):
    feed = acme_feed.feed

    async def scenario():
        async with Bystanders(daphne, acme_feed) as others:
            sock = raw_websocket(daphne, f"/ws/feeds/{feed.uuid}/publish/", bearer(acme_feed.token))
            with sock:
                sock.sendall(masked_frame(0x1, b'{"value": "\xff\xfe"}'))
                code = await asyncio.to_thread(close_code_of, sock)
            await others.still_served()
        return code

    assert asyncio.run(scenario()) == 1007


def test_a_viewer_flooding_the_server_is_rate_limited_then_closed_1008(daphne, acme_feed):
    feed = acme_feed.feed

    async def scenario():
        async with Bystanders(daphne, acme_feed) as others:
            async with websockets.connect(viewer_url(daphne, feed)) as hostile:
                assert json.loads(await hostile.recv())["type"] == "hello"
                with contextlib.suppress(websockets.ConnectionClosed):
                    for _ in range(1000):
                        await hostile.send("{}")
                errors = []
                with contextlib.suppress(websockets.ConnectionClosed):
                    async with asyncio.timeout(10):
                        while True:
                            frame = json.loads(await hostile.recv())
                            if frame["type"] == "error":
                                errors.append(frame["error"])
                code = hostile.close_code if hostile.protocol.close_rcvd is not None else None
            await others.still_served()
        return errors, code

    errors, code = asyncio.run(scenario())
    assert errors and set(errors) == {"rate_limited"}
    assert code == 1008


@pytest.mark.parametrize("since", ["²", "1" * 5000, "-1", "0x10"])
def test_a_since_that_is_not_a_whole_number_is_refused_politely(daphne, acme_feed, since):
    feed = acme_feed.feed

    async def scenario():
        async with Bystanders(daphne, acme_feed) as others:
            url = viewer_url(daphne, feed, f"&since={since}")
            async with websockets.connect(url) as viewer:
                error = json.loads(await viewer.recv())
                code = await closed_with(viewer)
            await others.still_served()
        return error, code

    error, code = asyncio.run(scenario())
    assert (error["type"], error["error"]) == ("error", "bad_frame")
    assert code == 4400


@pytest.mark.parametrize("since", ["²", "1" * 5000])
def test_an_event_stream_ignores_a_since_that_is_not_a_whole_number(daphne, acme_feed, since):
    feed = acme_feed.feed
    url = f"{daphne.http}/feeds/{feed.uuid}/events/?key={feed.share_key}"
    request = urllib.request.Request(url, headers={"Last-Event-ID": since})
    with urllib.request.urlopen(request, timeout=10) as stream:
        assert stream.status == 200
        line = stream.readline()
        while not line.startswith(b"data: "):
            line = stream.readline()
        assert json.loads(line[len(b"data: ") :])["type"] == "hello"  # as for a fresh start


def test_the_per_user_connection_cap_holds_and_frees_a_slot_on_close(acme_feed, world):
    # Connection counts live in Redis by user id, which parallel test runs may
    # share: this user's id is nobody else's.
    dave = get_user_model().objects.create(
        pk=random.randrange(10**9, 2 * 10**9), username="dave", password=password_hash()
    )
    membership_set(tenant=world.acme, user=dave, role=Role.VIEWER)
    cookie = session_cookie_for(dave)
    server = Daphne(MAX_CONNECTIONS_PER_USER="3").start()
    headers = {"Cookie": cookie, "Origin": server.http}
    url = f"{server.ws}/ws/feeds/{acme_feed.feed.uuid}/"

    async def scenario():
        sockets = []
        for _ in range(3):
            sockets.append(await websockets.connect(url, additional_headers=headers))
            assert json.loads(await sockets[-1].recv())["type"] == "hello"
        async with websockets.connect(url, additional_headers=headers) as fourth:
            refusal = json.loads(await fourth.recv())
            code = await closed_with(fourth)
        async with websockets.connect(viewer_url(server, acme_feed.feed)) as someone_else:
            assert json.loads(await someone_else.recv())["type"] == "hello"
        await sockets.pop().close()
        async with asyncio.timeout(10):
            while True:  # the slot is freed when the server has seen the close
                async with websockets.connect(url, additional_headers=headers) as again:
                    first = json.loads(await again.recv())
                if first["type"] == "hello":
                    break
                await asyncio.sleep(0.1)
        for open_socket in sockets:
            await open_socket.close()
        return refusal, code

    try:
        refusal, code = asyncio.run(scenario())
    finally:
        server.stop()
    assert (refusal["type"], refusal["error"]) == ("error", "too_many_connections")
    assert code == 4429
