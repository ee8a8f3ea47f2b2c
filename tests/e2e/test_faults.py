"""Faults, against the real server: Redis dying, Daphne killed, slow viewers, producers crashing.

Each test runs its own Daphne (and, where Redis is killed, its own redis-server)
so that nothing it breaks leaks into other tests. Timing bounds are generous
(the machine is shared); what viewers receive is checked exactly.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request

import psutil
import pytest
import websockets
from django.db import connection

from documents.services import document_create
from streams.models import Feed, FeedKind, ProducerKind
from streams.services import feed_create, producer_create
from streamsite.redisproc import PrivateRedis
from tests.conftest import ROOT, Daphne, server_env
from tests.documents.conftest import numbers_tsv
from tests.e2e.clients import ReconnectingViewer, next_frame

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def private_redis():
    """A redis-server of this test's own, to kill and restart."""
    server = PrivateRedis().start()
    yield server
    server.stop()


def start_runproducer(producer, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "runproducer", str(producer.uuid)],
        cwd=ROOT,
        env=server_env(**env),
        stdout=subprocess.DEVNULL,
    )


def stop_process(process: subprocess.Popen) -> int:
    """SIGTERM, and the exit status (a producer finishes its step and exits 0)."""
    process.terminate()
    return process.wait(15)


def last_seq(feed_pk: int) -> int:
    """The feed's last persisted seq; for worker threads (closes its own connection)."""
    try:
        return Feed.objects.values_list("last_seq", flat=True).get(pk=feed_pk)
    finally:
        connection.close()


def get_status(url: str, timeout: float = 10.0) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def assert_every_seq_once_in_order(viewer: ReconnectingViewer, last: int) -> None:
    seqs = viewer.seqs
    assert seqs, "the viewer received no sample"
    assert seqs == list(range(seqs[0], last + 1)), (
        f"gap or duplicate: {len(seqs)} samples from {seqs[0]} to {seqs[-1]}, expected up to {last}"
    )
    assert viewer.resyncs == []


# -- Redis ----------------------------------------------------------------------


def publish_over_http(server: Daphne, feed, token: str, value: int) -> int:
    request = urllib.request.Request(
        f"{server.http}/api/feeds/{feed.uuid}/samples/",
        data=json.dumps({"value": value}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["seq"]


def test_redis_killed_for_5_s_producer_and_viewers_recover_with_every_seq_once(
    acme_feed, world, private_redis
):
    feed = acme_feed.feed
    # A feed that is published to only while Redis is away, and a document whose
    # page is turned then: with no later message to reveal the gap, only the
    # hub's reconnection tells their viewers to read the database again.
    quiet = feed_create(tenant=world.acme, name="quiet", kind=FeedKind.BINARY, share=True)
    _, quiet_token = producer_create(feed=quiet, kind=ProducerKind.EXTERNAL)
    document = document_create(
        tenant=world.acme, name="shared", data=numbers_tsv(250), share="steer"
    ).document
    server = Daphne(REDIS_URL=private_redis.url).start()
    producer = start_runproducer(acme_feed.producer, REDIS_URL=private_redis.url)
    url = f"{server.ws}/ws/feeds/{feed.uuid}/?key={feed.share_key}"
    quiet_url = f"{server.ws}/ws/feeds/{quiet.uuid}/?key={quiet.share_key}"
    document_url = f"{server.ws}/ws/documents/{document.uuid}/?key={document.share_key}"
    measured = {}

    async def scenario() -> list[ReconnectingViewer]:
        viewers = [ReconnectingViewer(url).start() for _ in range(3)]
        quiet_viewer = ReconnectingViewer(quiet_url).start()
        steerer = await websockets.connect(document_url)
        follower = await websockets.connect(document_url)
        async with asyncio.timeout(30):
            for viewer in viewers:
                await viewer.wait_for_samples(5)
            await quiet_viewer.wait_for_hello()
            assert (await next_frame(steerer))["page_no"] == 1
            assert (await next_frame(follower))["page_no"] == 1
        measured["at_kill"] = await asyncio.to_thread(last_seq, feed.pk)
        private_redis.kill()
        await asyncio.sleep(1)
        measured["quiet_acks"] = [
            await asyncio.to_thread(publish_over_http, server, quiet, quiet_token, value)
            for value in (1, 0, 1)
        ]
        await steerer.send(json.dumps({"type": "page", "page_no": 2}))
        await asyncio.sleep(4)
        measured["at_restart"] = await asyncio.to_thread(last_seq, feed.pk)
        restarting = time.monotonic()
        await asyncio.to_thread(private_redis.start)
        # Everything persisted while Redis was away reaches every viewer ...
        async with asyncio.timeout(20):
            for viewer in viewers:
                await viewer.wait_for_seq(measured["at_restart"])
            measured["caught_up"] = time.monotonic() - restarting
            await quiet_viewer.wait_for_seq(3)
            measured["pages"] = [(await next_frame(s))["page_no"] for s in (steerer, follower)]
        await steerer.close()
        await follower.close()
        await quiet_viewer.stop()
        # ... and new samples flow live again, through Redis.
        await asyncio.sleep(10)
        measured["late"] = max(
            received - frame["ts"]
            for viewer in viewers
            for received, frame in viewer.arrivals[-20:]
        )
        measured["health"] = await asyncio.to_thread(get_status, f"{server.http}/healthz")
        measured["producer_alive"] = producer.poll() is None
        measured["producer_status"] = await asyncio.to_thread(stop_process, producer)
        measured["final"] = await asyncio.to_thread(last_seq, feed.pk)
        async with asyncio.timeout(20):
            for viewer in viewers:
                await viewer.wait_for_seq(measured["final"])
        for viewer in viewers:
            await viewer.stop()
        return [*viewers, quiet_viewer]

    try:
        *viewers, quiet_viewer = asyncio.run(scenario())
    finally:
        producer.kill()
        server.stop()
    print(
        f"redis restart: every viewer had every sample {measured['caught_up']:.2f} s after "
        f"the restart began; latency of the last samples {measured['late']:.3f} s"
    )
    # The producer kept persisting while Redis was away, and never stopped.
    assert measured["at_restart"] >= measured["at_kill"] + 10
    assert (measured["producer_alive"], measured["producer_status"]) == (True, 0)
    for viewer in viewers:
        assert_every_seq_once_in_order(viewer, measured["final"])
        assert viewer.seqs[0] <= measured["at_kill"]
    assert measured["caught_up"] < 10
    assert measured["late"] < 2.0, "samples after the restart do not arrive live"
    status, health = measured["health"]
    assert (status, health["checks"]["redis"]) == (200, "ok")
    assert measured["quiet_acks"] == [1, 2, 3]
    assert_every_seq_once_in_order(quiet_viewer, 3)
    assert measured["pages"] == [2, 2]


def wait_until_healthy(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while get_status(url)[0] != 200:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} still unhealthy after {timeout} s")
        time.sleep(0.5)


def test_with_redis_down_a_handshake_is_refused_fast_and_healthz_names_redis(
    acme_feed, private_redis
):
    feed = acme_feed.feed
    server = Daphne(REDIS_URL=private_redis.url).start()
    url = f"{server.ws}/ws/feeds/{feed.uuid}/?key={feed.share_key}"

    async def handshake() -> tuple[float, int | None, list[dict]]:
        """Seconds until the server closed, the close code, and the frames before it."""
        started = time.monotonic()
        frames = []
        async with asyncio.timeout(10), websockets.connect(url) as socket:
            with contextlib.suppress(websockets.ConnectionClosedError):
                async for message in socket:
                    frames.append(json.loads(message))
        return time.monotonic() - started, socket.close_code, frames

    async def scenario():
        # A viewer already watching: this process holds the feed's subscription,
        # so a new viewer of the feed would need no Redis round trip to join.
        async with websockets.connect(url) as watching:
            assert json.loads(await watching.recv())["type"] == "hello"
            private_redis.kill()
            await asyncio.sleep(1)
            refused = await handshake()
            started = time.monotonic()
            health = await asyncio.to_thread(get_status, f"{server.http}/healthz")
            health_seconds = time.monotonic() - started
        await asyncio.to_thread(private_redis.start)
        await asyncio.to_thread(wait_until_healthy, f"{server.http}/healthz")
        # A client that retries (as the feed page does) is let in again within moments.
        back = ReconnectingViewer(url).start()
        async with asyncio.timeout(10):
            await back.wait_for_hello()
        await back.stop()
        return refused, health, health_seconds, back

    try:
        (seconds, code, frames), (status, health), health_seconds, accepted = asyncio.run(
            scenario()
        )
    finally:
        server.stop()
    print(f"redis down: handshake refused in {seconds:.2f} s; /healthz in {health_seconds:.2f} s")
    assert seconds < 3
    assert code == 1011
    assert [f["error"] for f in frames if f["type"] == "error"] == ["unavailable"]
    assert not any(f["type"] == "hello" for f in frames)
    assert status == 503 and health["status"] == "unavailable"
    assert health["checks"]["database"] == "ok" and health["checks"]["redis"] != "ok"
    # The watching viewer's subscription is the hub's: its reader lost Redis.
    assert health["checks"]["hub"] == "failed: reader lost Redis"
    assert health["live"]["hub"]["groups"] >= 1 and health["live"]["hub"]["connected"] is False
    assert health_seconds < 5
    # Once Redis is back, so are handshakes.
    assert accepted.last_seq == 0


# -- slow viewers ----------------------------------------------------------------


class StalledViewer:
    """A raw WebSocket client that completes the handshake and then never reads.

    Its receive buffer is tiny, so the server's writes to it back up at once.
    """

    def __init__(self, port: int, path: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        response = b""
        while b"\r\n\r\n" not in response:
            response += self.sock.recv(1)  # byte by byte: leave the frames unread
        assert response.startswith(b"HTTP/1.1 101"), response
        self.local_port = self.sock.getsockname()[1]

    def read_to_the_end(self) -> tuple[bytes, str]:
        """Everything the server sent, and how the stream ended (EOF or reset)."""
        self.sock.settimeout(5)
        data = bytearray()
        try:
            while chunk := self.sock.recv(65536):
                data += chunk
            ending = "eof"
        except ConnectionResetError:
            ending = "reset"
        except TimeoutError:
            ending = "still open"
        self.sock.close()
        return bytes(data), ending


def close_code_in(stream: bytes) -> int | None:
    """The code of the close frame in a server's (unmasked) frame stream, if one came."""
    position = 0
    while position + 2 <= len(stream):
        opcode, length = stream[position] & 0x0F, stream[position + 1] & 0x7F
        position += 2
        if length == 126:
            (length,) = struct.unpack("!H", stream[position : position + 2])
            position += 2
        elif length == 127:
            (length,) = struct.unpack("!Q", stream[position : position + 8])
            position += 8
        if opcode == 0x8 and length >= 2 and position + 2 <= len(stream):
            return struct.unpack("!H", stream[position : position + 2])[0]
        position += length
    return None


def metric(server: Daphne, name: str) -> int:
    with urllib.request.urlopen(f"{server.http}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(f"streamsite_{name} "):
                return int(line.split()[-1])
    return 0


def open_connection_to(pid: int, client_port: int) -> bool:
    return any(
        c.raddr and c.raddr.port == client_port and c.status == psutil.CONN_ESTABLISHED
        for c in psutil.Process(pid).net_connections("tcp")
    )


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def test_a_viewer_that_stops_reading_is_cut_off_and_nobody_else_notices(acme_feed, private_redis):
    feed = acme_feed.feed
    server = Daphne(REDIS_URL=private_redis.url, WEBSOCKET_MAX_PENDING_BYTES="262144").start()
    server_process = psutil.Process(server.process.pid)
    viewer_path = f"/ws/feeds/{feed.uuid}/?key={feed.share_key}"
    publish_url = f"{server.ws}/ws/feeds/{feed.uuid}/publish/"
    rate, seconds = 200, 60
    measured: dict = {"rss": []}

    async def publish(socket) -> None:
        """``rate`` samples a second, each stamped with the time it is sent."""
        started = time.monotonic()
        for n in range(rate * seconds):
            await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
            await socket.send(json.dumps({"value": n % 2, "ts": time.time()}))

    async def read_acks(socket) -> None:
        async for _ in socket:
            pass

    async def watch_server(stalled: StalledViewer, stop: asyncio.Event) -> None:
        started = time.monotonic()
        while not stop.is_set():
            measured["rss"].append(server_process.memory_info().rss)
            if "cut_off_after" not in measured and not open_connection_to(
                server_process.pid, stalled.local_port
            ):
                measured["cut_off_after"] = time.monotonic() - started
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    async def scenario() -> ReconnectingViewer:
        viewer = ReconnectingViewer(f"{server.ws}{viewer_path}").start()
        stalled = await asyncio.to_thread(StalledViewer, server.port, viewer_path)
        async with asyncio.timeout(10):
            await viewer.wait_for_hello()
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch_server(stalled, stop))
        async with websockets.connect(
            publish_url, additional_headers={"Authorization": f"Bearer {acme_feed.token}"}
        ) as producer:
            acks = asyncio.create_task(read_acks(producer))
            await publish(producer)
            async with asyncio.timeout(20):
                await viewer.wait_for_seq(rate * seconds)
            acks.cancel()
        stop.set()
        await watcher
        measured["stalled"] = await asyncio.to_thread(stalled.read_to_the_end)
        await viewer.stop()
        return viewer

    try:
        viewer = asyncio.run(scenario())
        dropped = metric(server, "viewers_dropped_total")
        deadline = time.monotonic() + 15  # each process flushes its counters every 5 s
        while dropped == 0 and time.monotonic() < deadline:
            time.sleep(0.5)
            dropped = metric(server, "viewers_dropped_total")
    finally:
        server.stop()
    latencies = [received - frame["ts"] for received, frame in viewer.arrivals]
    first_seconds = latencies[: rate * 5]
    growth = (max(measured["rss"]) - measured["rss"][0]) / 2**20
    stream, ending = measured["stalled"]
    code = close_code_in(stream)
    print(
        f"slow viewer: cut off after {measured.get('cut_off_after', -1):.0f} s, read "
        f"{len(stream)} bytes then {ending} (close code {code}); server RSS grew "
        f"{growth:.1f} MiB; other viewer's latency median/p99 "
        f"{statistics.median(first_seconds) * 1000:.0f}/{p99(first_seconds) * 1000:.0f} ms in "
        f"its first 5 s, {statistics.median(latencies) * 1000:.0f}/{p99(latencies) * 1000:.0f} ms "
        f"overall, max {max(latencies) * 1000:.0f} ms"
    )
    # The stalled viewer was cut off, with 4008 if its close frame reached it at all.
    assert measured.get("cut_off_after") is not None, "the stalled viewer is still connected"
    assert ending in ("eof", "reset") and code in (4008, None)
    assert dropped == 1
    # Everyone else: every sample once, in order, on time, on one connection.
    assert_every_seq_once_in_order(viewer, rate * seconds)
    assert len(viewer.connects) == 1
    assert p99(latencies) < 0.5
    # No drift either: typical latency over the minute is that of the first seconds
    # (the median, since the machine is shared and its spikes are not ours).
    assert statistics.median(latencies) < max(0.05, 3 * statistics.median(first_seconds))
    assert growth < 50


# -- processes killed ------------------------------------------------------------


def test_daphne_killed_and_restarted_viewers_reconnect_and_resume_without_a_gap(acme_feed):
    feed = acme_feed.feed
    server = Daphne().start()
    producer = start_runproducer(acme_feed.producer)
    url = f"{server.ws}/ws/feeds/{feed.uuid}/?key={feed.share_key}"
    measured = {}

    async def scenario() -> list[ReconnectingViewer]:
        viewers = [ReconnectingViewer(url).start() for _ in range(3)]
        async with asyncio.timeout(30):
            for viewer in viewers:
                await viewer.wait_for_samples(5)
        killed = time.monotonic()
        await asyncio.to_thread(server.stop, kill=True)
        await asyncio.sleep(2)  # the producer keeps persisting meanwhile
        await asyncio.to_thread(server.start)
        listening = time.monotonic()
        async with asyncio.timeout(20):
            for viewer in viewers:
                await viewer.wait_for_connects(2)
        measured["reconnected"] = max(v.connects[1] for v in viewers) - listening
        measured["away"] = max(v.connects[1] for v in viewers) - killed
        await asyncio.sleep(3)
        await asyncio.to_thread(stop_process, producer)
        measured["final"] = await asyncio.to_thread(last_seq, feed.pk)
        async with asyncio.timeout(20):
            for viewer in viewers:
                await viewer.wait_for_seq(measured["final"])
        for viewer in viewers:
            await viewer.stop()
        return viewers

    try:
        viewers = asyncio.run(scenario())
    finally:
        producer.kill()
        server.stop()
    print(
        f"daphne kill -9: viewers back {measured['reconnected']:.2f} s after the new process "
        f"listened ({measured['away']:.2f} s after the kill, 2 s of it down on purpose)"
    )
    for viewer in viewers:
        assert len(viewer.connects) == 2
        assert_every_seq_once_in_order(viewer, measured["final"])
    assert measured["reconnected"] < 5


def test_runproducers_restarts_a_killed_producer_and_the_other_never_stops(
    acme_feed, world, tmp_path
):
    steady_feed = feed_create(tenant=world.acme, name="steady", kind=FeedKind.BINARY)
    producer_create(
        feed=steady_feed, kind=ProducerKind.BERNOULLI, config={"p": 0.5, "interval_ms": 100}
    )
    victim_feed = acme_feed.feed
    log = tmp_path / "runproducers.log"
    with log.open("w") as output:
        supervisor = subprocess.Popen(
            [sys.executable, "manage.py", "runproducers"],
            cwd=ROOT,
            env=server_env(),
            stdout=output,
            stderr=subprocess.STDOUT,
        )

    def seqs() -> tuple[int, int]:
        return last_seq(victim_feed.pk), last_seq(steady_feed.pk)

    def child_running(producer_uuid: str) -> psutil.Process | None:
        for child in psutil.Process(supervisor.pid).children():
            with contextlib.suppress(psutil.NoSuchProcess):
                if producer_uuid in child.cmdline():
                    return child
        return None

    try:
        deadline = time.monotonic() + 30
        while min(seqs()) < 3:
            assert time.monotonic() < deadline, "the producers did not start"
            time.sleep(0.2)
        victim = child_running(str(acme_feed.producer.uuid))
        victim.kill()  # SIGKILL: no clean-up, as a crash
        killed = time.monotonic()
        at_kill = seqs()
        timeline = []  # (seconds since the kill, victim's last seq, steady feed's last seq)
        while time.monotonic() - killed < 10:
            timeline.append((time.monotonic() - killed, *seqs()))
            time.sleep(0.2)
        replacement = child_running(str(acme_feed.producer.uuid))
    finally:
        status = stop_process(supervisor)
    victim_back = next(t for t, victim_seq, _ in timeline if victim_seq > at_kill[0])
    steady_times = [t for t, _, steady in timeline if steady > at_kill[1]]
    steady_changes = [0.0] + [
        t for (t, _, s), (_, _, before) in zip(timeline[1:], timeline, strict=False) if s > before
    ]
    longest_steady_pause = max(
        b - a for a, b in zip(steady_changes, steady_changes[1:], strict=False)
    )
    print(
        f"runproducers: killed producer writing again {victim_back:.1f} s after the kill; "
        f"the other's longest pause {longest_steady_pause:.1f} s"
    )
    assert replacement is not None and replacement.pid != victim.pid
    assert victim_back < 10
    assert steady_times and longest_steady_pause < 3.0
    text = log.read_text()
    assert "exited with -9; restarting in 1 s" in text
    assert status == 0 and "All producers stopped." in text
