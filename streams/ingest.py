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

The tenants' samples_per_second is asked here too, for everything in the
batch at once, in the ingest thread just before each transaction: one Redis
round trip per group commit (tenants.quotas.take_samples_many) instead of one
per socket batch, and none of the event loop's time (from the loop, through
redis-py's asyncio client, it was a tenth of the loop's time in the ``feeds``
bench). A frame over the quota fails its future with a ``quota_exceeded``
SampleRejected and never reaches the transaction.
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


@dataclass(eq=False)  # each ask is itself (compared by identity)
class _Ask:
    """Frames submitted together that ask for their tenant's samples_per_second together."""

    quota: quotas.SamplesAsk
    source: object  # the publish socket (for pacing: who else may be about to submit)
    granted: int | None = None  # how many of them (in order) the quota let through
    refusal: SampleRejected | None = None  # what the others get


# One frame of a batch, as the ingest thread takes it: its write, its ask and index there.
Admitted = tuple[Write, "_Ask | None", int]


def _admit_and_append(batch: list[Admitted]) -> list[StoredSamples | SampleRejected]:
    """In the ingest thread: the quota for the batch's asks, then one transaction for the
    frames it granted; the others get ``quota_exceeded`` in their place."""
    close_old_connections()
    try:
        _admit(batch)
        refused = [_refused(ask, index) for _, ask, index in batch]
        writes = [write for (write, _, _), ask in zip(batch, refused, strict=True) if ask is None]
        appended = iter(services.samples_append_many(writes=writes) if writes else ())
        return [next(appended) if ask is None else _refusal_of(ask) for ask in refused]
    finally:
        close_old_connections()


def _admit(batch: list[Admitted]) -> None:
    """Ask the quota, in one round trip, for every ask of the batch not yet decided (an ask
    whose frames span two batches is asked once, with the first)."""
    undecided = {id(ask): ask for _, ask, _ in batch if ask is not None and ask.granted is None}
    if not undecided:
        return
    asks = list(undecided.values())
    for ask, count in zip(asks, quotas.take_samples_many([a.quota for a in asks]), strict=True):
        ask.granted = count


def _refused(ask: _Ask | None, index: int) -> _Ask | None:
    """The frame's ask if the quota refused the frame (the ``index``-th of it), else None."""
    if ask is not None and ask.granted is not None and index >= ask.granted:
        return ask
    return None


def _refusal_of(ask: _Ask) -> SampleRejected:
    if ask.refusal is None:
        exceeded = quotas.samples_refusal(ask.quota.tenant)
        ask.refusal = SampleRejected("quota_exceeded", exceeded.message, limit=exceeded.limit)
    return ask.refusal


# One frame waiting to be written: its feed, values, publish ids and future, and
# the ask it belongs to with its index there (None: not counted against a quota).
Queued = tuple[
    Feed, Values, Sequence[str] | None, "asyncio.Future[StoredSamples]", _Ask | None, int
]


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
            batch: list[Queued] = []
            count = 0
            while self._queue and (
                not batch or count + len(self._queue[0][1]) <= MAX_BATCH_SAMPLES
            ):
                batch.append(self._queue.pop(0))
                count += len(batch[-1][1])
            self._writing = len(batch)
            try:
                admitted: list[Admitted] = [
                    ((feed, values, ids), ask, index) for feed, values, ids, _, ask, index in batch
                ]
                results = await asyncio.get_running_loop().run_in_executor(
                    _executor, _admit_and_append, admitted
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
