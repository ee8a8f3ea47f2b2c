"""Load generator: thousands of WebSocket viewers, publishers, and the measurements.

The same code drives the Tornado reference and Streamsite: it only sees URLs, built
from the templates below, and the server's PIDs (for CPU and RSS).

Process model: viewers live in ``LoadConfig.procs`` worker processes (spawned, one
asyncio loop each, connections dealt round-robin); publishers and the steering
client live in the coordinating process. Workers and coordinator talk over pipes:

    coordinator                           worker
    start ------------------------------> connect viewers (bounded, with retries),
                                          wait for every first frame
              <-------------------------- ("ready", WorkerReport)
    publish for the measurement window
    ("finish", targets) ----------------> wait until every viewer reached its target
              <-------------------------- ("result", WorkerReport), close, exit

Each workload is an async function returning ``WorkloadResult`` rows. Durations and
sizes are parameters so ``bench/run.py --quick`` can shrink them.

The load generator reports its own CPU (coordinator + workers) for every workload: on
a 2-core machine it shares the CPU with the server, and a result is only a server
measurement if the load generator was not the one saturated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import time
import traceback
import uuid
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Literal

import psutil
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from bench.reference import raise_nofile_limit

VIEWER_URL = "ws://{host}:{port}/ws/feeds/{uuid}/?key={key}"
PUBLISH_URL = "ws://{host}:{port}/ws/feeds/{uuid}/publish/?token={token}"
DOCUMENT_URL = "ws://{host}:{port}/ws/documents/{uuid}/?key={key}"

ViewerKind = Literal["feed", "document"]


class LoadgenError(RuntimeError):
    """The load generator itself could not run a workload (not a server miss)."""


# --------------------------------------------------------------------------- endpoints


@dataclass(frozen=True)
class FeedEndpoint:
    """Where viewers and the producer of one feed connect."""

    uuid: str
    viewer_url: str
    publish_url: str

    @classmethod
    def build(cls, host: str, port: int, uuid: str, key: str, token: str) -> FeedEndpoint:
        return cls(
            uuid=uuid,
            viewer_url=VIEWER_URL.format(host=host, port=port, uuid=uuid, key=key),
            publish_url=PUBLISH_URL.format(host=host, port=port, uuid=uuid, token=token),
        )


@dataclass(frozen=True)
class DocumentEndpoint:
    """Where viewers and the steering client of one document connect."""

    uuid: str
    viewer_url: str
    steer_url: str

    @classmethod
    def build(cls, host: str, port: int, uuid: str, key: str) -> DocumentEndpoint:
        url = DOCUMENT_URL.format(host=host, port=port, uuid=uuid, key=key)
        return cls(uuid=uuid, viewer_url=url, steer_url=url)


# --------------------------------------------------------------------------- accumulators


class SeqTracker:
    """Per-viewer bookkeeping of ``sample`` seqs: lost, duplicated, out of order.

    ``baseline`` is the ``last_seq`` of the viewer's ``hello``: the viewer expects
    every seq in ``baseline + 1 .. end`` exactly once, in order.

    - A seq above ``highest + 1`` opens a gap; the skipped seqs are remembered.
    - A seq that fills a remembered gap is *out of order* (it is not lost).
    - Any other seq at or below ``highest`` (including one at or below the baseline,
      which the hello already covered) is a *duplicate*.
    - ``lost(end)`` = gaps never filled + the tail ``highest + 1 .. end`` never seen.
    """

    __slots__ = ("baseline", "highest", "missing", "received", "duplicated", "out_of_order")

    def __init__(self, baseline: int) -> None:
        self.baseline = baseline
        self.highest = baseline
        self.missing: set[int] = set()
        self.received = 0
        self.duplicated = 0
        self.out_of_order = 0

    def add(self, seq: int) -> None:
        highest = self.highest
        if seq == highest + 1:
            self.highest = seq
            self.received += 1
        elif seq > highest:
            self.missing.update(range(highest + 1, seq))
            self.highest = seq
            self.received += 1
        elif seq in self.missing:
            self.missing.discard(seq)
            self.out_of_order += 1
            self.received += 1
        else:
            self.duplicated += 1

    def expected(self, end: int) -> int:
        return max(0, end - self.baseline)

    def lost(self, end: int) -> int:
        # Gaps above ``end`` (after an unacked sample) are not part of what was expected.
        gaps = sum(1 for seq in self.missing if seq <= end)
        return gaps + max(0, end - self.highest)

    def complete(self, end: int) -> bool:
        return self.highest >= end and not self.missing


class LatencyHistogram:
    """Latencies in 0.1 ms buckets: mergeable across processes, exact maximum.

    Percentiles are reported as the upper edge of their bucket (never optimistic by
    more than 0.1 ms). Negative latencies (clock noise) count as 0.
    """

    RESOLUTION_MS = 0.1

    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()
        self.max_ms = 0.0

    def add(self, ms: float) -> None:
        if ms < 0.0:
            ms = 0.0
        self.counts[int(ms * 10)] += 1
        if ms > self.max_ms:
            self.max_ms = ms

    def merge(self, other: LatencyHistogram) -> None:
        self.counts.update(other.counts)
        self.max_ms = max(self.max_ms, other.max_ms)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def percentile(self, q: float) -> float | None:
        total = self.total
        if not total:
            return None
        rank = max(1, math.ceil(q / 100 * total))
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= rank:
                return min((bucket + 1) * self.RESOLUTION_MS, self.max_ms)
        return self.max_ms


class ProcessGroup:
    """CPU and RSS of a set of processes, each with its descendants (re-read on every call)."""

    def __init__(self, pids: Iterable[int], *, children: bool = True) -> None:
        self.pids = list(pids)
        self.children = children

    def processes(self) -> list[psutil.Process]:
        found: dict[int, psutil.Process] = {}
        for pid in self.pids:
            try:
                root = psutil.Process(pid)
                found[pid] = root
                if self.children:
                    for child in root.children(recursive=True):
                        found[child.pid] = child
            except psutil.Error:
                continue  # exited: nothing more to count
        return list(found.values())

    def cpu(self) -> dict[int, float]:
        """User + system CPU seconds per live PID."""
        times: dict[int, float] = {}
        for process in self.processes():
            try:
                t = process.cpu_times()
            except psutil.Error:
                continue
            times[process.pid] = t.user + t.system
        return times

    def rss(self) -> int:
        total = 0
        for process in self.processes():
            try:
                total += process.memory_info().rss
            except psutil.Error:
                continue
        return total


@dataclass
class CpuDelta:
    seconds: float
    peak_process_seconds: float


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> CpuDelta:
    """CPU used between two ``ProcessGroup.cpu()`` snapshots.

    A process born in between counts in full; one that died in between is lost
    (psutil cannot read a reaped process), which only under-counts.
    """
    per_pid = [t - before.get(pid, 0.0) for pid, t in after.items()]
    return CpuDelta(sum(per_pid), max(per_pid, default=0.0))


# --------------------------------------------------------------------------- configuration


@dataclass
class LoadConfig:
    """How the load generator runs, independent of the workload."""

    procs: int = 2
    server_pids: Sequence[int] = ()
    connect_concurrency: int = 100  # handshakes in flight, over all workers
    connect_retries: int = 3
    open_timeout: float = 15.0
    ready_timeout: float = 300.0  # until every viewer is connected and has its first frame
    drain_timeout: float = 20.0  # after publishing stops, until every frame has arrived
    quiet: float = 3.0  # ...or until no frame arrived for this long
    window: int = 64  # publisher frames in flight


# --------------------------------------------------------------------------- worker side


@dataclass
class WorkerSpec:
    index: int
    kind: ViewerKind
    urls: list[str]
    groups: list[int]  # feed/document index of each viewer
    connect_concurrency: int
    connect_retries: int
    open_timeout: float
    ready_timeout: float


@dataclass
class WorkerReport:
    """What one worker (or, merged, all of them) observed. Picklable."""

    viewers: int = 0
    connected: int = 0
    failed: int = 0
    retries: int = 0
    first_frames: int = 0
    connect_seconds: float = 0.0
    connect_errors: Counter[str] = field(default_factory=Counter)
    unexpected_closes: int = 0
    expected: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    resyncs: int = 0
    protocol_errors: Counter[str] = field(default_factory=Counter)
    other_frames: Counter[str] = field(default_factory=Counter)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    received_at: Counter[int] = field(default_factory=Counter)  # frames per 0.1 s
    last_frame_at: float = 0.0
    pages: list[list[tuple[int, float]]] = field(default_factory=list)
    drain_complete: bool = True
    baselines: dict[int, tuple[int, int]] = field(default_factory=dict)  # group: (min, max)

    def merge(self, other: WorkerReport) -> None:
        for name in (
            "viewers",
            "connected",
            "failed",
            "retries",
            "first_frames",
            "unexpected_closes",
            "expected",
            "delivered",
            "lost",
            "duplicated",
            "out_of_order",
            "resyncs",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.connect_seconds = max(self.connect_seconds, other.connect_seconds)
        self.connect_errors.update(other.connect_errors)
        self.protocol_errors.update(other.protocol_errors)
        self.other_frames.update(other.other_frames)
        self.latency.merge(other.latency)
        self.received_at.update(other.received_at)
        self.last_frame_at = max(self.last_frame_at, other.last_frame_at)
        self.pages.extend(other.pages)
        self.drain_complete = self.drain_complete and other.drain_complete
        for group, (lo, hi) in other.baselines.items():
            mine = self.baselines.get(group)
            self.baselines[group] = (
                (lo, hi) if mine is None else (min(lo, mine[0]), max(hi, mine[1]))
            )

    def received_between(self, start: float, end: float) -> int:
        lo, hi = int(start * 10), int(end * 10)
        return sum(n for bucket, n in self.received_at.items() if lo <= bucket < hi)


class _Viewer:
    __slots__ = ("url", "group", "ws", "tracker", "pages", "closed")

    def __init__(self, url: str, group: int) -> None:
        self.url = url
        self.group = group
        self.ws: ClientConnection | None = None
        self.tracker: SeqTracker | None = None
        self.pages: list[tuple[int, float]] = []
        self.closed = False


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:160]


async def open_websocket(url: str, open_timeout: float) -> ClientConnection:
    """Open one client connection the way every benchmark client does.

    No compression (browsers offer it, but neither server is measured on it), no
    keepalive pings (they would add traffic unrelated to the workload), no proxy
    from the environment (loopback only).
    """
    return await connect(
        url,
        compression=None,
        ping_interval=None,
        proxy=None,
        open_timeout=open_timeout,
        close_timeout=2,
        max_size=2**22,
    )


class _Worker:
    """One worker process's viewers and their counters (lives inside the worker)."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.viewers = [_Viewer(u, g) for u, g in zip(spec.urls, spec.groups, strict=True)]
        self.report = WorkerReport(viewers=len(self.viewers))
        self.tasks: list[asyncio.Task[None]] = []
        self.stopping = False
        # Viewers that got their first frame or closed without it; the pool is ready
        # once connecting is over and every connected viewer is settled.
        self.settled = 0
        self.connecting = True
        self.all_settled = asyncio.Event()

    async def connect_all(self) -> None:
        gate = asyncio.Semaphore(self.spec.connect_concurrency)
        started = time.monotonic()

        async def open_one(viewer: _Viewer) -> None:
            async with gate:
                viewer.ws = await self._connect(viewer.url)
            if viewer.ws is not None:
                self.report.connected += 1
                self.tasks.append(asyncio.create_task(self._receive(viewer)))

        await asyncio.gather(*(open_one(v) for v in self.viewers))
        self.report.connect_seconds = time.monotonic() - started

    async def _connect(self, url: str) -> ClientConnection | None:
        retries = self.spec.connect_retries
        for attempt in range(retries + 1):
            try:
                return await open_websocket(url, self.spec.open_timeout)
            except InvalidStatus as exc:
                # A refusal (403, 404) will not change on retry.
                if exc.response.status_code < 500 or attempt == retries:
                    self.report.failed += 1
                    self.report.connect_errors[f"HTTP {exc.response.status_code}"] += 1
                    return None
            except (OSError, TimeoutError, WebSocketException) as exc:
                if attempt == retries:
                    self.report.failed += 1
                    self.report.connect_errors[_describe(exc)] += 1
                    return None
            self.report.retries += 1
            await asyncio.sleep(0.25 * 2**attempt)
        return None

    async def _receive(self, viewer: _Viewer) -> None:
        """The hot path: one loop per connection, counting every frame it receives."""
        report = self.report
        latency = report.latency
        received_at = report.received_at
        ws = viewer.ws
        assert ws is not None
        document = self.spec.kind == "document"
        try:
            async for raw in ws:
                now = time.time()
                try:
                    frame = json.loads(raw)
                    kind = frame["type"]
                except (ValueError, TypeError, KeyError):
                    report.protocol_errors["unparsable frame"] += 1
                    continue
                if kind == "sample" and not document:
                    tracker = viewer.tracker
                    if tracker is None:
                        report.protocol_errors["sample before hello"] += 1
                        continue
                    tracker.add(frame["seq"])
                    ts = frame.get("ts")
                    if ts is not None:
                        latency.add((now - ts) * 1000.0)
                    received_at[int(now * 10)] += 1
                    report.last_frame_at = now
                elif kind == "page" and document:
                    if not viewer.pages:
                        report.first_frames += 1
                        self._settle()
                    viewer.pages.append((frame["page_no"], now))
                    received_at[int(now * 10)] += 1
                    report.last_frame_at = now
                elif kind == "hello" and not document:
                    if viewer.tracker is None:
                        viewer.tracker = SeqTracker(frame["last_seq"])
                        report.first_frames += 1
                        self._settle()
                    else:
                        # Only legitimate after a resync; the tracker keeps its baseline.
                        report.other_frames["hello (again)"] += 1
                elif kind == "resync":
                    report.resyncs += 1
                else:
                    report.other_frames[kind] += 1
        except ConnectionClosed:
            pass
        finally:
            viewer.closed = True
            if not self.stopping:
                report.unexpected_closes += 1
            if viewer.tracker is None and not viewer.pages:
                self._settle()

    def _settle(self) -> None:
        self.settled += 1
        if not self.connecting and self.settled >= self.report.connected:
            self.all_settled.set()

    async def wait_first_frames(self) -> None:
        """Return once every connected viewer has its first frame (or closed without it)."""
        self.connecting = False
        if self.settled >= self.report.connected:
            self.all_settled.set()
        await self.all_settled.wait()

    def record_baselines(self) -> None:
        for viewer in self.viewers:
            if viewer.tracker is not None:
                lo, hi = self.report.baselines.get(viewer.group, (viewer.tracker.baseline,) * 2)
                b = viewer.tracker.baseline
                self.report.baselines[viewer.group] = (min(lo, b), max(hi, b))

    def _complete(self, viewer: _Viewer, targets: dict[int, int]) -> bool:
        if viewer.ws is None or viewer.closed:
            return True  # nothing more will arrive
        target = targets.get(viewer.group)
        if target is None:
            return True
        if self.spec.kind == "document":
            return len(viewer.pages) - 1 >= target
        return viewer.tracker is None or viewer.tracker.complete(target)

    async def drain(self, targets: dict[int, int], quiet: float) -> None:
        """Wait until every viewer reached its target, or nothing arrived for ``quiet`` s.

        Polls (every 50 ms) rather than signalling from the hot path: the receive loop
        stays as cheap as possible. ``report.drain_complete`` says which way it ended.
        """
        self.report.drain_complete = False
        pending = [v for v in self.viewers if not self._complete(v, targets)]
        last_count, last_change = -1, time.monotonic()
        while pending:
            count = sum(self.report.received_at.values())
            if count != last_count:
                last_count, last_change = count, time.monotonic()
            elif time.monotonic() - last_change > quiet:
                return
            await asyncio.sleep(0.05)
            pending = [v for v in pending if not self._complete(v, targets)]
        self.report.drain_complete = True

    def tally(self, targets: dict[int, int]) -> None:
        """Fold the per-viewer trackers into the report (feeds) or attach page records."""
        report = self.report
        for viewer in self.viewers:
            if self.spec.kind == "document":
                if viewer.pages:
                    report.pages.append(viewer.pages)
                continue
            tracker = viewer.tracker
            if tracker is None:
                continue
            end = targets.get(viewer.group, tracker.baseline)
            report.expected += tracker.expected(end)
            report.delivered += tracker.received
            report.lost += tracker.lost(end)
            report.duplicated += tracker.duplicated
            report.out_of_order += tracker.out_of_order

    def open_count(self) -> int:
        return sum(1 for v in self.viewers if v.ws is not None and not v.closed)

    async def close_all(self) -> None:
        self.stopping = True
        sockets = [v.ws for v in self.viewers if v.ws is not None and not v.closed]
        try:
            await asyncio.wait_for(
                asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True), 15
            )
        except TimeoutError:
            for ws in sockets:
                ws.transport.abort()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def _poll_pipe(conn: Connection, wait: float) -> tuple[str, Any] | None:
    """The next message if one arrives within ``wait`` s, else None.

    Polls in a thread so the event loop keeps serving the viewers meanwhile.
    """
    if await asyncio.to_thread(conn.poll, wait):
        message: tuple[str, Any] = conn.recv()
        return message
    return None


async def _next_command(conn: Connection) -> tuple[str, Any] | None:
    """The coordinator's next command; None if it went away or stayed silent for an hour."""
    for _ in range(7200):
        try:
            message = await _poll_pipe(conn, 0.5)
        except EOFError:
            return None
        if message is not None:
            return message
    return None


async def _worker_async(conn: Connection, spec: WorkerSpec) -> None:
    worker = _Worker(spec)
    try:
        async with asyncio.timeout(spec.ready_timeout):
            await worker.connect_all()
            await worker.wait_first_frames()
    except TimeoutError:
        # Report what we have: unfinished handshakes count as failures, and viewers
        # still without a first frame show up as such in the ready report.
        worker.report.failed = worker.report.viewers - worker.report.connected
        worker.report.connect_errors["not ready within the ready timeout"] += 1
    worker.record_baselines()
    conn.send(("ready", worker.report))
    # Commands come until "finish"; bounded so an orphaned worker does not live forever.
    for _ in range(10_000):
        message = await _next_command(conn)
        if message is None:
            break
        command, arg = message
        if command == "status":
            conn.send(
                (
                    "status",
                    {
                        "open": worker.open_count(),
                        "unexpected_closes": worker.report.unexpected_closes,
                    },
                )
            )
        elif command == "finish":
            targets: dict[int, int] = arg["targets"]
            try:
                async with asyncio.timeout(arg["drain_timeout"]):
                    await worker.drain(targets, arg["quiet"])
            except TimeoutError:
                pass  # drain_complete stays False
            worker.tally(targets)
            conn.send(("result", worker.report))
            break
    await worker.close_all()


def _worker_entry(conn: Connection, spec: WorkerSpec) -> None:
    """Process entry point of a viewer worker."""
    raise_nofile_limit()
    try:
        asyncio.run(_worker_async(conn, spec))
    except BaseException:
        conn.send(("crash", traceback.format_exc()))
        raise


# --------------------------------------------------------------------------- coordinator side


class ViewerPool:
    """Viewer connections spread round-robin over worker processes.

    ``async with ViewerPool(...) as pool`` returns once every viewer is connected (or
    has failed after its retries) and has received its first frame; ``pool.ready``
    holds the merged connection report. ``finish()`` collects the measurements.
    """

    def __init__(
        self, kind: ViewerKind, viewers: Sequence[tuple[str, int]], config: LoadConfig
    ) -> None:
        self.kind = kind
        self.config = config
        procs = max(1, min(config.procs, len(viewers)))
        per_worker = max(1, config.connect_concurrency // procs)
        self.specs = [
            WorkerSpec(
                index=i,
                kind=kind,
                urls=[url for url, _ in viewers[i::procs]],
                groups=[group for _, group in viewers[i::procs]],
                connect_concurrency=per_worker,
                connect_retries=config.connect_retries,
                open_timeout=config.open_timeout,
                ready_timeout=config.ready_timeout,
            )
            for i in range(procs)
        ]
        self.processes: list[BaseProcess] = []
        self.pipes: list[Connection] = []
        self.ready = WorkerReport()
        self.finished = False

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    async def __aenter__(self) -> ViewerPool:
        # spawn, not fork: the coordinator may already run an event loop and threads.
        context = multiprocessing.get_context("spawn")
        for spec in self.specs:
            parent, child = context.Pipe()
            process = context.Process(target=_worker_entry, args=(child, spec), daemon=True)
            process.start()
            child.close()
            self.processes.append(process)
            self.pipes.append(parent)
        try:
            for report in await self._collect("ready", self.config.ready_timeout + 30):
                self.ready.merge(report)
        except BaseException:
            await self._stop_workers(grace=0)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        # Finished workers close their viewers and exit by themselves; others are killed.
        await self._stop_workers(grace=20 if self.finished else 0)

    async def _stop_workers(self, grace: float) -> None:
        for process in self.processes:
            await asyncio.to_thread(process.join, grace)
            if process.is_alive():
                process.terminate()
                await asyncio.to_thread(process.join, 5)
        for pipe in self.pipes:
            pipe.close()

    async def _expect(self, index: int, kind: str) -> Any:
        """Wait for worker ``index``'s ``kind`` message; fail fast if the worker dies."""
        conn, process = self.pipes[index], self.processes[index]
        while True:
            message = await _poll_pipe(conn, 1.0)
            if message is None:
                if not process.is_alive():
                    raise LoadgenError(f"worker {index} exited ({process.exitcode})")
                continue
            got, payload = message
            if got == "crash":
                raise LoadgenError(f"worker {index} crashed:\n{payload}")
            if got == kind:
                return payload

    async def _collect(self, kind: str, seconds: float) -> list[Any]:
        """Every worker's ``kind`` message, within ``seconds``."""
        try:
            async with asyncio.timeout(seconds):
                return await asyncio.gather(
                    *(self._expect(i, kind) for i in range(len(self.processes)))
                )
        except TimeoutError:
            raise LoadgenError(f"workers sent no {kind!r} within {seconds:.0f} s") from None

    async def status(self) -> dict[str, int]:
        """How many viewers are still open, and how many closed without being asked."""
        for pipe in self.pipes:
            pipe.send(("status", None))
        totals: Counter[str] = Counter()
        for status in await self._collect("status", 30):
            totals.update(status)
        return dict(totals)

    async def finish(self, targets: dict[int, int]) -> WorkerReport:
        """Tell workers the target of each group (last seq, or page frames), collect results."""
        arg = {
            "targets": targets,
            "drain_timeout": self.config.drain_timeout,
            "quiet": self.config.quiet,
        }
        for pipe in self.pipes:
            pipe.send(("finish", arg))
        self.finished = True
        merged = WorkerReport()
        for report in await self._collect("result", self.config.drain_timeout + 60):
            merged.merge(report)
        return merged


@dataclass
class PublishReport:
    sent_frames: int = 0
    sent_samples: int = 0
    acked_frames: int = 0
    acked_samples: int = 0
    last_seq: int | None = None
    errors: Counter[str] = field(default_factory=Counter)
    last_ack_at: float = 0.0
    closed: bool = False


class Publisher:
    """One producer connection with at most ``window`` frames awaiting their ack.

    Acks answer frames in order, so a FIFO of frame sizes tells how many samples each
    ack covers. An ``error`` frame answers a frame too (it published nothing).
    """

    def __init__(self, url: str, window: int) -> None:
        self.url = url
        self.window = asyncio.Semaphore(window)
        self.report = PublishReport()
        self._in_flight: deque[int] = deque()
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._closing = False
        self._ended = False
        self._answered = asyncio.Event()  # set while no frame awaits its answer
        self._answered.set()

    async def open(self, open_timeout: float) -> None:
        self._ws = await open_websocket(self.url, open_timeout)
        self._reader = asyncio.create_task(self._read_acks())

    async def _read_acks(self) -> None:
        assert self._ws is not None
        report = self.report
        try:
            async for raw in self._ws:
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind not in ("ack", "error"):
                    continue
                size = self._in_flight.popleft() if self._in_flight else 0
                if kind == "ack":
                    report.acked_frames += 1
                    report.acked_samples += size
                    report.last_seq = frame["seq"]
                    report.last_ack_at = time.time()
                else:
                    report.errors[frame.get("error", "?")] += 1
                if not self._in_flight:
                    self._answered.set()
                self.window.release()
        except ConnectionClosed:
            pass
        finally:
            self._ended = True
            report.closed = not self._closing
            self._answered.set()  # nothing more will be answered
            self.window.release()  # wake a sender blocked on a full window

    async def send(self, frame: dict[str, Any], samples: int) -> bool:
        """Send one frame once the window allows; False if the connection is gone."""
        await self.window.acquire()
        if self._ws is None or self._ended:
            self.window.release()  # pass the wake-up on
            return False
        self._in_flight.append(samples)
        self._answered.clear()
        try:
            await self._ws.send(json.dumps(frame))
        except ConnectionClosed:
            return False
        self.report.sent_frames += 1
        self.report.sent_samples += samples
        return True

    async def steady(self, rate: float, duration: float, start_at: float) -> None:
        """Publish ``{"value", "ts"}`` at ``rate`` per second from ``start_at`` for ``duration``.

        The schedule is absolute (no drift); if the window is full the sender waits,
        which shows up as fewer samples sent than scheduled.
        """
        for i in range(int(rate * duration)):
            delay = start_at + i / rate - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if not await self.send({"value": _value(i), "ts": time.time()}, 1):
                break

    async def flood(self, duration: float, batch: int = 1, *, ids: str | None = None) -> None:
        """Publish as fast as the window allows for ``duration`` seconds.

        ``batch`` 1 sends ``{"value", "ts"}``; more sends ``{"values": [...]}`` frames.
        With ``ids`` (a prefix), every sample carries an id (``"id"`` / ``"ids"``), as
        exactly-once producers send them.
        """
        deadline = time.time() + duration
        i = 0
        while time.time() < deadline:
            if batch == 1:
                frame: dict[str, Any] = {"value": _value(i), "ts": time.time()}
                if ids is not None:
                    frame["id"] = f"{ids}-{i}"
            else:
                frame = {"values": [_value(i + j) for j in range(batch)]}
                if ids is not None:
                    frame["ids"] = [f"{ids}-{i + j}" for j in range(batch)]
            if not await self.send(frame, batch):
                break
            i += batch

    async def wait_answered(self, seconds: float) -> None:
        """Wait (at most ``seconds``) until every sent frame was answered or the socket ended."""
        try:
            async with asyncio.timeout(seconds):
                await self._answered.wait()
        except TimeoutError:
            self.report.errors["no ack within the drain timeout"] += 1

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


def _value(i: int) -> int:
    """A deterministic binary sample stream with a 30 % success rate."""
    return 1 if i * 7 % 10 < 3 else 0


async def _open_publishers(urls: Sequence[str], config: LoadConfig) -> list[Publisher]:
    publishers = [Publisher(url, config.window) for url in urls]
    gate = asyncio.Semaphore(50)

    async def open_one(publisher: Publisher) -> None:
        async with gate:
            await publisher.open(config.open_timeout)

    await asyncio.gather(*(open_one(p) for p in publishers))
    return publishers


# --------------------------------------------------------------------------- results


@dataclass
class WorkloadResult:
    """One row of the results table. ``None`` means "not measured by this workload"."""

    workload: str
    connections: int = 0
    connected: int = 0
    connect_failures: int = 0
    expected: int | None = None
    delivered: int | None = None
    lost: int | None = None
    duplicated: int | None = None
    out_of_order: int | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    rate: float | None = None
    rate_unit: str = ""
    window_s: float = 0.0
    server_cpu_s: float | None = None
    server_cpu_per_1k: float | None = None  # per 1,000 delivered frames (ingest: acked samples)
    server_rss_per_conn: float | None = None  # bytes
    connect_wall_s: float | None = None  # idle, storm: from the first handshake to the last
    loadgen_cpu_s: float = 0.0
    other_cpu_s: float = 0.0  # CPU of every other process on the machine
    loadgen_peak_proc_pct: float = 0.0  # the busiest load generator process, % of one core
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def loadgen_cpu_pct(self) -> float:
        return 100.0 * self.loadgen_cpu_s / self.window_s if self.window_s else 0.0

    @property
    def other_cpu_pct(self) -> float:
        return 100.0 * self.other_cpu_s / self.window_s if self.window_s else 0.0

    @property
    def server_cpu_pct(self) -> float | None:
        if self.server_cpu_s is None or not self.window_s:
            return None
        return 100.0 * self.server_cpu_s / self.window_s


def _machine_busy() -> float:
    """CPU seconds all processes of the machine have used (every core, not idle or iowait)."""
    t = psutil.cpu_times()
    # On Linux user/nice already include guest time; steal is not ours at all.
    return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


class _Window:
    """CPU of the server and of the load generator over one measurement window."""

    def __init__(self, server_pids: Sequence[int], loadgen_pids: Sequence[int]) -> None:
        self.server = ProcessGroup(server_pids)
        self.loadgen = ProcessGroup([os.getpid(), *loadgen_pids], children=False)
        self.server_before: dict[int, float] = {}
        self.machine_before = 0.0
        self.loadgen_before: dict[int, float] = {}
        self.started = self.ended = 0.0

    def start(self) -> None:
        self.server_before = self.server.cpu()
        self.loadgen_before = self.loadgen.cpu()
        self.machine_before = _machine_busy()
        self.started = time.time()

    def stop(self, result: WorkloadResult) -> None:
        self.ended = time.time()
        result.window_s = self.ended - self.started
        loadgen = cpu_delta(self.loadgen_before, self.loadgen.cpu())
        result.loadgen_cpu_s = loadgen.seconds
        result.loadgen_peak_proc_pct = 100.0 * loadgen.peak_process_seconds / result.window_s
        if self.server.pids:
            result.server_cpu_s = cpu_delta(self.server_before, self.server.cpu()).seconds
        # Whatever else ran on the machine meanwhile competed with both sides.
        busy = _machine_busy() - self.machine_before
        result.other_cpu_s = max(0.0, busy - result.loadgen_cpu_s - (result.server_cpu_s or 0.0))
        if result.other_cpu_pct > 10:
            result.notes.append(
                f"other processes used {result.other_cpu_pct:.0f}% of a core during the "
                "measurement: the machine was not quiet"
            )
        if result.loadgen_peak_proc_pct > 90:
            result.notes.append(
                f"a load generator process was {result.loadgen_peak_proc_pct:.0f}% busy: "
                "the result may be load-generator bound"
            )


def _connection_errors(result: WorkloadResult, ready: WorkerReport) -> None:
    result.connections = ready.viewers
    result.connected = ready.connected
    result.connect_failures = ready.failed
    for error, count in ready.connect_errors.most_common(5):
        result.errors.append(f"{count}x connect {error}")
    missing_first = ready.connected - ready.first_frames
    if missing_first:
        result.errors.append(f"{missing_first} viewers got no first frame")
    if ready.retries:
        result.notes.append(f"{ready.retries} handshake retries")


def _frame_results(result: WorkloadResult, report: WorkerReport) -> None:
    result.expected = report.expected
    result.delivered = report.delivered
    result.lost = report.lost
    result.duplicated = report.duplicated
    result.out_of_order = report.out_of_order
    result.p50_ms = report.latency.percentile(50)
    result.p99_ms = report.latency.percentile(99)
    result.max_ms = report.latency.max_ms if report.latency.total else None
    if result.server_cpu_s is not None and report.delivered:
        result.server_cpu_per_1k = result.server_cpu_s / report.delivered * 1000
    if report.unexpected_closes:
        result.errors.append(f"{report.unexpected_closes} viewers closed by the server")
    if report.resyncs:
        result.errors.append(f"{report.resyncs} resync frames")
    for error, count in report.protocol_errors.items():
        result.errors.append(f"{count}x {error}")
    if report.other_frames:
        result.notes.append(
            "other frames: " + ", ".join(f"{k} {v}" for k, v in report.other_frames.items())
        )
    if not report.drain_complete:
        result.notes.append("drain timed out: some frames had not arrived")
    for group, (lo, hi) in report.baselines.items():
        if lo != hi:
            result.errors.append(f"feed {group}: viewers' hello last_seq differ ({lo}..{hi})")
            break


# --------------------------------------------------------------------------- workloads


async def _feed_workload(
    name: str,
    feeds: Sequence[FeedEndpoint],
    viewers_per_feed: int,
    config: LoadConfig,
    *,
    duration: float,
    rate: float | None,
) -> WorkloadResult:
    """Viewers on every feed, one publisher per feed; steady ``rate`` or flood if None."""
    # Feed-major interleaving, so round-robin dealing spreads each feed over workers.
    viewers = [(f.viewer_url, g) for _ in range(viewers_per_feed) for g, f in enumerate(feeds)]
    result = WorkloadResult(name)
    async with ViewerPool("feed", viewers, config) as pool:
        _connection_errors(result, pool.ready)
        publishers = await _open_publishers([f.publish_url for f in feeds], config)
        window = _Window(config.server_pids, pool.pids)
        window.start()
        t0 = window.started
        if rate is None:
            await asyncio.gather(*(p.flood(duration) for p in publishers))
        else:
            # Stagger feeds over one period so 200 feeds do not publish in lockstep.
            step = 1 / rate / len(publishers)
            await asyncio.gather(
                *(p.steady(rate, duration, t0 + 0.05 + i * step) for i, p in enumerate(publishers))
            )
        await asyncio.gather(*(p.wait_answered(config.drain_timeout) for p in publishers))
        published_until = time.time()
        targets = {
            g: p.report.last_seq for g, p in enumerate(publishers) if p.report.last_seq is not None
        }
        report = await pool.finish(targets)
        window.stop(result)
        await asyncio.gather(*(p.close() for p in publishers), return_exceptions=True)
    _frame_results(result, report)
    in_window = report.received_between(t0, published_until)
    result.rate = in_window / (published_until - t0)
    result.rate_unit = "frames/s"
    sent = sum(p.report.sent_samples for p in publishers)
    acked = sum(p.report.acked_samples for p in publishers)
    result.notes.append(f"{sent} samples published ({sent / duration:.0f}/s), {acked} acked")
    for p in publishers:
        for error, count in p.report.errors.items():
            result.errors.append(f"{count}x publish error {error}")
    if any(p.report.closed for p in publishers):
        result.errors.append("a publisher connection was closed by the server")
    return result


async def fanout(
    feed: FeedEndpoint,
    config: LoadConfig,
    *,
    viewers: int = 1000,
    rate: float = 10,
    duration: float = 20,
) -> list[WorkloadResult]:
    """1 feed, ``viewers`` viewers, ``rate`` samples/s for ``duration`` s: integrity + latency."""
    return [await _feed_workload("fanout", [feed], viewers, config, duration=duration, rate=rate)]


async def flood(
    feed: FeedEndpoint, config: LoadConfig, *, viewers: int = 100, duration: float = 15
) -> list[WorkloadResult]:
    """1 feed, ``viewers`` viewers, producer as fast as its window of acks allows.

    The rate is frames received by all viewers while the producer was publishing.
    """
    return [await _feed_workload("flood", [feed], viewers, config, duration=duration, rate=None)]


async def feeds(
    endpoints: Sequence[FeedEndpoint],
    config: LoadConfig,
    *,
    viewers_per_feed: int = 5,
    rate: float = 2,
    duration: float = 20,
) -> list[WorkloadResult]:
    """Many feeds (200 x 5 viewers), each with its own producer at ``rate`` samples/s."""
    return [
        await _feed_workload(
            "feeds", endpoints, viewers_per_feed, config, duration=duration, rate=rate
        )
    ]


async def idle(
    feed: FeedEndpoint,
    config: LoadConfig,
    *,
    connections: int = 10_000,
    hold: float = 10,
    settle: float = 2,
    name: str = "idle",
) -> list[WorkloadResult]:
    """Hold ``connections`` viewers on one feed; connect wall time, server RSS per
    connection, errors. (``storm`` is the same with 500 handshakes in flight: every
    viewer reconnecting at once after a deploy or a Redis blip.)

    RSS per connection = (server RSS once all are connected and ``settle`` s passed
    - server RSS before the first connection) / connections held. Server CPU per
    handshake = the server's CPU from the first handshake to the last / connected.
    """
    result = WorkloadResult(name)
    server = ProcessGroup(config.server_pids)
    rss_before = server.rss()
    cpu_before = server.cpu()
    async with ViewerPool("feed", [(feed.viewer_url, 0)] * connections, config) as pool:
        connect_cpu = cpu_delta(cpu_before, server.cpu()).seconds
        _connection_errors(result, pool.ready)
        await asyncio.sleep(settle)
        rss_after = server.rss()
        window = _Window(config.server_pids, pool.pids)
        window.start()
        await asyncio.sleep(hold)
        status = await pool.status()
        report = await pool.finish({})
        window.stop(result)
    _frame_results(result, report)
    result.expected = result.delivered = None  # nothing is published here
    result.lost = result.duplicated = result.out_of_order = None
    held = status.get("open", 0)
    if held != connections:
        result.errors.append(f"{held} of {connections} connections still open after {hold:.0f} s")
    if config.server_pids and held:
        result.server_rss_per_conn = (rss_after - rss_before) / held
    result.connect_wall_s = pool.ready.connect_seconds
    if config.server_pids and pool.ready.connected:
        # The srv CPU s/1k column of idle and storm: per 1,000 handshakes (ms each).
        result.server_cpu_per_1k = connect_cpu / pool.ready.connected * 1000
    result.notes.append(
        f"connected {pool.ready.connected} in {pool.ready.connect_seconds:.1f} s, "
        f"held {held} for {hold:.0f} s; server RSS {rss_before / 2**20:.0f} -> "
        f"{rss_after / 2**20:.0f} MiB"
    )
    return [result]


async def ingest(
    feed: FeedEndpoint,
    config: LoadConfig,
    *,
    duration: float = 10,
    batch: int = 100,
) -> list[WorkloadResult]:
    """One producer, no viewers: samples acknowledged per second.

    Four rows: ``ingest`` sends single ``{"value", "ts"}`` frames with ``config.window``
    in flight; ``ingest-batch`` sends ``{"values": [...]}`` frames of ``batch`` samples;
    ``ingest-ids`` and ``ingest-batch-ids`` the same with an id on every sample (the
    cost of exactly-once publishing).
    """
    results = []
    runs = (
        ("ingest", 1, None),
        ("ingest-batch", batch, None),
        ("ingest-ids", 1, "s"),
        ("ingest-batch-ids", batch, "b"),
    )
    for name, size, ids in runs:
        result = WorkloadResult(name, connections=1)
        (publisher,) = await _open_publishers([feed.publish_url], config)
        result.connected = 1
        window = _Window(config.server_pids, [])
        window.start()
        await publisher.flood(duration, batch=size, ids=ids)
        await publisher.wait_answered(config.drain_timeout)
        report = publisher.report
        end = report.last_ack_at or time.time()
        window.stop(result)
        await publisher.close()
        result.rate = report.acked_samples / max(1e-9, end - window.started)
        result.rate_unit = "samples/s"
        result.delivered = report.acked_samples
        result.expected = report.sent_samples
        if result.server_cpu_s is not None and report.acked_samples:
            result.server_cpu_per_1k = result.server_cpu_s / report.acked_samples * 1000
        for error, count in report.errors.items():
            result.errors.append(f"{count}x publish error {error}")
        if report.closed:
            result.errors.append("the publisher connection was closed by the server")
        result.notes.append(
            f"{report.acked_frames} frames of {size} acked; CPU column per 1k samples"
        )
        results.append(result)
    return results


async def documents(
    document: DocumentEndpoint,
    config: LoadConfig,
    *,
    viewers: int = 100,
    changes: int = 50,
    rate: float = 5,
) -> list[WorkloadResult]:
    """``viewers`` viewers of one document; a steering client changes the page ``changes`` times.

    Latency of change k for one viewer = arrival of the first ``page`` frame with the
    new page_no after the change was sent (and before the same page_no is sent again).
    Pages cycle through up to 10 distinct numbers, never the same twice in a row.
    """
    result = WorkloadResult("documents")
    async with ViewerPool("document", [(document.viewer_url, 0)] * viewers, config) as pool:
        _connection_errors(result, pool.ready)
        steer = await open_websocket(document.steer_url, config.open_timeout)
        first = json.loads(await asyncio.wait_for(steer.recv(), config.open_timeout))
        total_pages = int(first.get("total_pages", 0))
        if total_pages < 2:
            raise LoadgenError(f"document has {total_pages} page(s); need at least 2")
        cycle = min(total_pages, 10)
        current = int(first.get("page_no", 1))
        steer_errors: Counter[str] = Counter()

        async def read_steer() -> None:
            try:
                async for raw in steer:
                    frame = json.loads(raw)
                    if frame.get("type") == "error":
                        steer_errors[frame.get("error", "?")] += 1
            except ConnectionClosed:
                pass

        reader = asyncio.create_task(read_steer())
        window = _Window(config.server_pids, pool.pids)
        window.start()
        sent: list[tuple[int, float]] = []
        for k in range(changes):
            delay = window.started + 0.05 + k / rate - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            current = current % cycle + 1
            sent.append((current, time.time()))
            await steer.send(json.dumps({"type": "page", "page_no": current}))
        report = await pool.finish({0: changes})
        window.stop(result)
        await steer.close()
        await asyncio.gather(reader, return_exceptions=True)
    _frame_results(result, report)
    latency = LatencyHistogram()
    matched = 0
    for pages in report.pages:
        for k, (page_no, sent_at) in enumerate(sent):
            until = sent[k + cycle][1] if k + cycle < len(sent) else math.inf
            arrival = next((t for p, t in pages if p == page_no and sent_at <= t < until), None)
            if arrival is not None:
                matched += 1
                latency.add((arrival - sent_at) * 1000.0)
    result.expected = changes * len(report.pages)
    result.delivered = matched
    result.lost = result.expected - matched
    result.duplicated = result.out_of_order = None
    result.p50_ms = latency.percentile(50)
    result.p99_ms = latency.percentile(99)
    result.max_ms = latency.max_ms if latency.total else None
    received = sum(len(p) - 1 for p in report.pages)
    if result.server_cpu_s is not None and received:
        result.server_cpu_per_1k = result.server_cpu_s / received * 1000
    result.rate = changes / result.window_s
    result.rate_unit = "changes/s"
    for error, count in steer_errors.items():
        result.errors.append(f"{count}x steering error {error}")
    return [result]


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> None:
    """Run one workload against an already running reference-style server (random UUIDs).

    For side-by-side runs with server start-up and PIDs use ``bench/run.py``.
    """
    parser = argparse.ArgumentParser(description="Streamsite benchmark load generator")
    parser.add_argument(
        "workload", choices=["fanout", "flood", "feeds", "idle", "ingest", "documents"]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--procs", type=int, default=LoadConfig.procs)
    parser.add_argument("--server-pid", type=int, action="append", default=[])
    args = parser.parse_args(argv)
    raise_nofile_limit()
    config = LoadConfig(procs=args.procs, server_pids=args.server_pid)

    def feed() -> FeedEndpoint:
        return FeedEndpoint.build(args.host, args.port, str(uuid.uuid4()), "ref", "ref")

    async def run() -> list[WorkloadResult]:
        if args.workload == "fanout":
            return await fanout(feed(), config)
        if args.workload == "flood":
            return await flood(feed(), config)
        if args.workload == "feeds":
            return await feeds([feed() for _ in range(200)], config)
        if args.workload == "idle":
            return await idle(feed(), config)
        if args.workload == "ingest":
            return await ingest(feed(), config)
        doc = DocumentEndpoint.build(args.host, args.port, str(uuid.uuid4()), "ref")
        return await documents(doc, config)

    for result in asyncio.run(run()):
        print(json.dumps(result.__dict__, default=str, indent=1))


if __name__ == "__main__":
    main()
