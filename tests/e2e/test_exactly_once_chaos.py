"""Exactly-once publishing under chaos, against the real server (docs/PROTOCOL.md, "Publish socket").

A producer publishes 10,000 samples (values 0..9,999, every one with an id) in
frames of random sizes while its connection is cut at random points: the
server's end of the TCP connection killed (``ss -K``: the client gets a reset),
the client's socket aborted, an ack lost on purpose (the frame is stored, the
socket aborted before the ack is read), Daphne stopped with SIGTERM and with
SIGKILL and started again on the same port and database. After each cut the
producer reconnects and resends every unacknowledged sample with its id, in
frames cut differently from the first time (so resent frames mix stored and
new samples). Then the feed must hold the 10,000 values once each, in order,
and a viewer that followed all along (reconnecting with ``since``) must have
seen each exactly once.

The seed is printed (``-s``) and can be replayed with CHAOS_SEED=<seed>.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import time
from collections import deque
from dataclasses import dataclass, field

import pytest
import websockets
from django.db import connection

from streams.models import Feed, FeedKind, ProducerKind, PublishedId, Sample
from streams.services import feed_create, producer_create
from tests.conftest import Daphne, unavailable
from tests.e2e.clients import ReconnectingViewer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TOTAL = 10_000
WINDOW = 8  # frames in flight
CUTS = (
    ["server_kill"] * 4
    + ["client_abort"] * 3
    + ["ack_lost"] * 2
    + ["sigterm_restart", "sigkill_restart"]
)


def _wait_until_stored(feed_pk: int, seq: int, timeout: float = 30) -> None:
    """Until the feed's last_seq reaches ``seq`` (for a worker thread: own connection)."""
    deadline = time.monotonic() + timeout
    try:
        while Feed.objects.values_list("last_seq", flat=True).get(pk=feed_pk) < seq:
            assert time.monotonic() < deadline, f"seq {seq} not stored within {timeout} s"
            time.sleep(0.02)
    finally:
        connection.close()


@dataclass
class Producer:
    """A raw publish-socket client that resends what is unacknowledged after every drop."""

    url: str
    rng: random.Random
    feed_pk: int
    seqs: dict[int, int] = field(default_factory=dict)  # sample index -> acked seq
    duplicates: int = 0  # samples the server acked as already stored
    errors: list[dict] = field(default_factory=list)
    connections: int = 0
    unsent: deque[int] = field(default_factory=lambda: deque(range(TOTAL)))
    in_flight: deque[list[int]] = field(default_factory=deque)

    def frame(self, indexes: list[int]) -> str:
        if len(indexes) == 1 and self.rng.random() < 0.5:
            (i,) = indexes
            return json.dumps({"value": i, "id": f"chaos-{i}", "ts": 1_700_000_000.0 + i})
        return json.dumps({"values": indexes, "ids": [f"chaos-{i}" for i in indexes]})

    def next_frame(self) -> list[int]:
        size = self.rng.choice([1, self.rng.randint(2, 20), self.rng.randint(50, 200)])
        return [self.unsent.popleft() for _ in range(min(size, len(self.unsent)))]

    def take(self, answer: dict) -> None:
        if answer.get("type") != "ack":
            self.errors.append(answer)
            self.in_flight.popleft()
            return
        sent = self.in_flight.popleft()
        seqs = answer.get("seqs") or list(range(answer["seq"] - len(sent) + 1, answer["seq"] + 1))
        assert len(seqs) == len(sent) and answer["seq"] == max(seqs)
        if answer.get("duplicate"):
            self.duplicates += len(sent)
        else:
            self.duplicates += len(answer.get("duplicates", []))
        for index, seq in zip(sent, seqs, strict=True):
            assert self.seqs.setdefault(index, seq) == seq, f"sample {index} acked as two seqs"

    def requeue(self) -> None:
        """After a drop: everything unacknowledged goes first, in order, re-cut into frames."""
        for indexes in reversed(self.in_flight):
            self.unsent.extendleft(reversed(indexes))
        self.in_flight.clear()

    @property
    def done(self) -> bool:
        return len(self.seqs) == TOTAL and not self.unsent


async def _connect(url: str) -> websockets.ClientConnection:
    """Retries while the server is away (restarting), for up to a minute."""
    async with asyncio.timeout(60):
        while True:
            try:
                return await websockets.connect(url, open_timeout=5, max_queue=None)
            except (OSError, TimeoutError, websockets.InvalidHandshake):
                await asyncio.sleep(0.1)


async def _kill_server_side(server: Daphne, socket: websockets.ClientConnection) -> None:
    """Destroy the server's end of this TCP connection (the kernel resets the client's)."""
    client_port = socket.transport.get_extra_info("sockname")[1]
    ss = await asyncio.create_subprocess_exec(
        "ss", "-K", "-t", "(", "sport", "=", f":{server.port}", "and", "dport", "=",
        f":{client_port}", ")",
        stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert await ss.wait() == 0


async def _restart(server: Daphne, *, kill: bool) -> None:
    await asyncio.to_thread(server.stop, kill=kill)
    await asyncio.to_thread(server.start)  # same port, same database


async def _publish_through_chaos(
    producer: Producer, server: Daphne, cuts: list[tuple[int, str]]
) -> None:
    """Send frames with WINDOW in flight; cut as soon as a frame reaches the next sample
    index in ``cuts`` (so every cut happens, whatever the frames' sizes)."""
    while not producer.done:
        socket = await _connect(producer.url)
        producer.connections += 1
        acked = asyncio.Event()

        async def read(socket=socket, acked=acked) -> None:
            async for message in socket:
                producer.take(json.loads(message))
                acked.set()

        reader = asyncio.create_task(read())
        cut = None
        try:
            while not producer.done:
                while len(producer.in_flight) >= WINDOW or (
                    not producer.unsent and producer.in_flight
                ):
                    acked.clear()
                    if reader.done():
                        break
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(acked.wait(), 1)
                if reader.done() or producer.done:
                    break
                indexes = producer.next_frame()
                if cuts and indexes[-1] >= cuts[0][0]:
                    cut = cuts.pop(0)[1]
                if cut == "ack_lost":
                    reader.cancel()  # the ack of this frame will never be read
                    with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                        await reader
                producer.in_flight.append(indexes)
                await socket.send(producer.frame(indexes))
                if cut is not None:
                    break
        except websockets.ConnectionClosed:
            pass
        if cut == "ack_lost":
            # Stored (the feed's last_seq reaches it) but never acknowledged.
            # Stored samples are a prefix of the values, value i at seq i + 1.
            expected = producer.in_flight[-1][-1] + 1
            await asyncio.to_thread(_wait_until_stored, producer.feed_pk, expected)
        if cut == "server_kill":
            await _kill_server_side(server, socket)
        elif cut in ("client_abort", "ack_lost"):
            socket.transport.abort()
        elif cut in ("sigterm_restart", "sigkill_restart"):
            await _restart(server, kill=cut == "sigkill_restart")
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
            await reader
        with contextlib.suppress(websockets.ConnectionClosed, OSError):
            await socket.close()
        producer.requeue()


def test_a_producer_cut_off_at_random_stores_every_sample_exactly_once(world, tmp_path):
    if shutil.which("ss") is None or os.geteuid() != 0:
        unavailable("the server-side cuts need `ss -K` (iproute2) run as root")
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\nchaos seed {seed} (replay: CHAOS_SEED={seed})")
    rng = random.Random(seed)
    feed = feed_create(tenant=world.acme, name="chaos", kind=FeedKind.NUMERIC, share=True)
    _, token = producer_create(feed=feed, kind=ProducerKind.EXTERNAL)
    server = Daphne(
        log_path=tmp_path / "daphne.log",
        QUOTA_SAMPLES_PER_SECOND="1000000",  # the burst is the point, not the quota
    ).start()
    # Cut points: sample indexes, anywhere in the stream.
    kinds = CUTS[:]
    rng.shuffle(kinds)
    cuts = list(zip(sorted(rng.sample(range(50, TOTAL - 50), len(kinds))), kinds, strict=True))
    print(f"cuts (sample index, kind): {cuts}")
    producer = Producer(f"{server.ws}/ws/feeds/{feed.uuid}/publish/?token={token}", rng, feed.pk)

    async def scenario() -> ReconnectingViewer:
        viewer = ReconnectingViewer(
            f"{server.ws}/ws/feeds/{feed.uuid}/?key={feed.share_key}", retry_seconds=0.2
        ).start()
        try:
            async with asyncio.timeout(30):
                await viewer.wait_for_hello()
            async with asyncio.timeout(100):
                await _publish_through_chaos(producer, server, cuts)
                await viewer.wait_for_seq(TOTAL)
            await asyncio.sleep(0.5)  # anything extra would arrive now
        finally:
            await viewer.stop()
        return viewer

    try:
        viewer = asyncio.run(scenario())
    finally:
        server.stop()
    print(
        f"{producer.connections} connections, {len(viewer.connects)} viewer connections, "
        f"{producer.duplicates} samples acked as duplicates"
    )
    context = f"(seed {seed})"
    assert not cuts, f"cuts not reached: {cuts} {context}"
    assert producer.errors == [], context
    values = list(Sample.objects.filter(feed=feed).order_by("seq").values_list("seq", "value"))
    assert values == [(n + 1, float(n)) for n in range(TOTAL)], context
    assert producer.seqs == {n: n + 1 for n in range(TOTAL)}, context
    assert producer.duplicates >= 1, f"no resend was ever a duplicate {context}"
    assert viewer.seqs == list(range(1, TOTAL + 1)), context
    assert [frame["value"] for _, frame in viewer.arrivals] == list(range(TOTAL)), context
    feed.refresh_from_db()
    assert feed.stats["n"] == TOTAL and feed.stats["mean"] == (TOTAL - 1) / 2, context
    assert PublishedId.objects.filter(feed=feed).count() == TOTAL == feed.remembered_ids
