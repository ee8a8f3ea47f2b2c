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
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from django.db import close_old_connections

from streams import services
from streams.models import Feed
from streams.services import SampleRejected, StoredSamples, Values, Write

# Samples per transaction: big enough to amortise the commit, small enough that
# one batch never holds feed locks for long.
MAX_BATCH_SAMPLES = 2000

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


# One frame waiting to be written: its feed, values, publish ids and future.
Queued = tuple[Feed, Values, Sequence[str] | None, "asyncio.Future[StoredSamples]"]


class IngestWriter:
    """The group commit of one event loop (owned by streamsite.runtime.Runtime)."""

    def __init__(self) -> None:
        self._queue: list[Queued] = []
        self._writing = 0
        self._task: asyncio.Task[None] | None = None

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
        self._queue.append((feed, values, ids, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="ingest-writer")
        return future

    async def _run(self) -> None:
        while self._queue:
            batch: list[Queued] = []
            count = 0
            while self._queue and (
                not batch or count + len(self._queue[0][1]) <= MAX_BATCH_SAMPLES
            ):
                batch.append(self._queue.pop(0))
                count += len(batch[-1][1])
            self._writing = len(batch)
            try:
                writes: list[Write] = [(feed, values, ids) for feed, values, ids, _ in batch]
                results = await asyncio.get_running_loop().run_in_executor(
                    _executor, _append_many, writes
                )
            except Exception as exc:
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            finally:
                self._writing = 0
            for (*_, future), outcome in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, SampleRejected):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
