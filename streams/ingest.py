"""Group commit for every publisher of this process.

Publish sockets hand their validated samples here instead of writing them
themselves. One writer per event loop takes everything queued, from every
socket and feed, and writes it in one transaction in one worker-thread call;
then each socket gets its samples back and acks them. Under load, a commit
and its single Redis round trip (streams/events.py) are shared by hundreds of
samples; with one quiet publisher it is simply one transaction per frame.

Each write is one frame and has a future of its own: a frame the feed refuses
(services.SampleRejected) fails its own future and nobody else's; an error of
the database itself fails every future of that transaction.

Commits are paced: while other publish sockets hand over frames at least
``PACE_MIN_RATE`` times a second between them (over the last
``PACE_ACTIVE_SECONDS``), a commit starts once ``INGEST_COMMIT_INTERVAL_MS``
have passed since the previous one started. It starts at once when every
socket heard from in that time already has a frame waiting (nobody else is
expected), or when ``PACE_FRAMES`` frames wait. So frames from many small
producers, arriving one by one, share the next commit, and its transaction,
quota call, publish round trip and thread hand-offs (a few ms of CPU) are paid
once for all of them; a lone producer, windowed or waiting for each ack, never
waits, nor does one beside a few quiet ones. Beside hundreds of busy sockets a
producer that waits for each ack gets one commit per interval.

The tenants' samples_per_second is asked here too, for everything queued at
once, just before each transaction: one Redis round trip per group commit
(tenants.quotas.take_samples_many) instead of one per socket batch. A frame
over the quota fails its future with a ``quota_exceeded`` SampleRejected and
never reaches the transaction.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.conf import settings
from django.db import close_old_connections

from streams import services
from streams.models import Feed
from streams.services import SampleRejected, StoredSamples, Values, Write
from tenants import quotas
from tenants.models import Tenant

# Samples per transaction: big enough to amortise the commit, small enough that
# one batch never holds feed locks for long.
MAX_BATCH_SAMPLES = 2000
# Frames waiting that start a commit before the pacing interval is over.
PACE_FRAMES = 32
# A socket that submitted this recently is expected to submit again: pacing waits for it ...
PACE_ACTIVE_SECONDS = 1.0
# ... when the other sockets submitted at least this many times a second over that time.
PACE_MIN_RATE = 100.0

# Ingest has a database thread of its own (and so its own persistent
# connection): asgiref's database_sync_to_async costs more per call than a
# small batch's SQL, and the shared thread also serves handshakes and replays.
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-db")


def _append_many(writes: list[Write]) -> list[StoredSamples | SampleRejected]:
    close_old_connections()
    try:
        return services.samples_append_many(writes=writes)
    finally:
        close_old_connections()


@dataclass(eq=False)  # each ask is itself (compared by identity)
class _Ask:
    """Frames submitted together that ask for their tenant's samples_per_second together."""

    quota: quotas.SamplesAsk
    source: object  # the publish socket (for pacing: who else may be about to submit)
    granted: int | None = None  # how many of them (in order) the quota let through


# One frame waiting to be written: its feed, values, publish ids and future, and
# the ask it belongs to with its index there (None: not counted against a quota).
Queued = tuple[
    Feed, Values, Sequence[str] | None, "asyncio.Future[StoredSamples]", _Ask | None, int
]


def _undecided(ask: _Ask | None) -> bool:
    return ask is not None and ask.granted is None


class IngestWriter:
    """The group commit of one event loop (owned by streamsite.runtime.Runtime)."""

    def __init__(self) -> None:
        self._queue: list[Queued] = []
        self._writing = 0
        self._task: asyncio.Task[None] | None = None
        self._last_commit = -1e9  # time.monotonic() when the latest commit started
        self._enough = asyncio.Event()  # set once waiting for the interval is pointless
        # (time.monotonic(), socket) of every submit of the last PACE_ACTIVE_SECONDS, and
        # how many of them each socket made (so a pacing decision costs O(sockets queued)).
        self._heard: deque[tuple[float, object]] = deque()
        self._submits: Counter[object] = Counter()
        self._expected = 0  # sockets a pacing wait is waiting for (0: not waiting)
        self._arrived: set[object] = set()  # sockets with frames queued, during a wait

    @classmethod
    def current(cls) -> IngestWriter:
        """This event loop's writer."""
        from streamsite.runtime import Runtime

        return Runtime.for_loop().ingest

    @property
    def backlog(self) -> int:
        """Frames queued or in the transaction being written (for /healthz)."""
        return len(self._queue) + self._writing

    def submit(
        self, feed: Feed, values: Values, ids: Sequence[str] | None = None
    ) -> asyncio.Future[StoredSamples]:
        """Queue one frame's samples (and their publish ids). The future gets them once
        durable (and broadcast after commit), or SampleRejected if the feed refused this
        frame, or the database's error."""
        future: asyncio.Future[StoredSamples] = asyncio.get_running_loop().create_future()
        self._queue.append((feed, values, ids, future, None, 0))
        self._start()
        return future

    def submit_counted(
        self,
        feed: Feed,
        frames: Sequence[tuple[Values, Sequence[str] | None]],
        *,
        tenant: Tenant,
        rate: int,
        source: object = None,
    ) -> list[asyncio.Future[StoredSamples]]:
        """Queue one socket's frames (values and ids) against the tenant's samples_per_second
        at ``rate``: they are granted in order while tokens last, and a frame over it fails
        with a ``quota_exceeded`` SampleRejected (nothing stored). Otherwise as ``submit``."""
        loop = asyncio.get_running_loop()
        source = object() if source is None else source
        ask = _Ask(quotas.SamplesAsk(tenant, rate, [len(values) for values, _ in frames]), source)
        futures: list[asyncio.Future[StoredSamples]] = []
        for index, (values, ids) in enumerate(frames):
            futures.append(loop.create_future())
            self._queue.append((feed, values, ids, futures[-1], ask, index))
        now = time.monotonic()
        self._forget_before(now - PACE_ACTIVE_SECONDS)
        self._heard.append((now, source))
        self._submits[source] += 1
        if self._expected:
            self._arrived.add(source)
            if len(self._arrived) >= self._expected:
                self._enough.set()
        self._start()
        return futures

    def _start(self) -> None:
        if self._expected and len(self._queue) >= PACE_FRAMES:
            self._enough.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="ingest-writer")

    async def _admit(self) -> None:
        """Ask the quota for every frame queued that has not asked yet (one round trip),
        and refuse, out of the queue, the frames it does not grant."""
        undecided: dict[int, _Ask] = {}
        for *_, ask, _ in self._queue:
            if ask is not None and ask.granted is None:
                undecided.setdefault(id(ask), ask)
        asks = list(undecided.values())
        if not asks:
            return
        try:
            granted = await quotas.take_samples_many([ask.quota for ask in asks])
        except Exception as exc:  # not Redis (quotas fails open), a bug: fail these frames
            for *_, future, ask, _ in self._queue:
                if id(ask) in undecided and not future.done():
                    future.set_exception(exc)
            self._queue[:] = [queued for queued in self._queue if id(queued[4]) not in undecided]
            return
        for ask, count in zip(asks, granted, strict=True):
            ask.granted = count
        kept: list[Queued] = []
        refusals: dict[int, SampleRejected] = {}
        for queued in self._queue:
            *_, future, ask, index = queued
            if ask is None or ask.granted is None or index < ask.granted:
                kept.append(queued)
                continue
            refusal = refusals.get(id(ask))
            if refusal is None:
                exceeded = quotas.samples_refusal(ask.quota.tenant)
                refusal = refusals[id(ask)] = SampleRejected(
                    "quota_exceeded", exceeded.message, limit=exceeded.limit
                )
            if not future.done():
                future.set_exception(refusal)
        self._queue[:] = kept

    def _forget_before(self, moment: float) -> None:
        heard, submits = self._heard, self._submits
        while heard and heard[0][0] < moment:
            _, source = heard.popleft()
            submits[source] -= 1
            if not submits[source]:
                del submits[source]

    async def _pace(self) -> None:
        """Wait for the rest of the commit interval while other active sockets may still
        submit (see the module docstring)."""
        now = time.monotonic()
        wait = self._last_commit + settings.INGEST_COMMIT_INTERVAL_MS / 1000 - now
        if wait > 0 and len(self._queue) < PACE_FRAMES:
            self._forget_before(now - PACE_ACTIVE_SECONDS)
            arrived = {ask.source for *_, ask, _ in self._queue if ask is not None}
            submits = self._submits
            others = len(self._heard) - sum(submits[source] for source in arrived)
            if others >= PACE_MIN_RATE * PACE_ACTIVE_SECONDS:
                self._arrived = arrived
                self._expected = len(submits.keys() | arrived)
                self._enough.clear()
                try:
                    await asyncio.wait_for(self._enough.wait(), wait)
                except TimeoutError:
                    pass
                finally:
                    self._expected, self._arrived = 0, set()
        self._last_commit = time.monotonic()

    async def _run(self) -> None:
        while self._queue:
            await self._pace()
            await self._admit()
            batch: list[Queued] = []
            count = 0
            # Frames queued while the quota was asked wait for the next pass.
            while (
                self._queue
                and not _undecided(self._queue[0][4])
                and (not batch or count + len(self._queue[0][1]) <= MAX_BATCH_SAMPLES)
            ):
                batch.append(self._queue.pop(0))
                count += len(batch[-1][1])
            self._writing = len(batch)
            try:
                writes: list[Write] = [(feed, values, ids) for feed, values, ids, *_ in batch]
                results = await asyncio.get_running_loop().run_in_executor(
                    _executor, _append_many, writes
                )
            except Exception as exc:
                for _, _, _, future, _, _ in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            finally:
                self._writing = 0
            for (_, _, _, future, _, _), outcome in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, SampleRejected):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
