"""Publishing samples: batched, windowed, every sample with an id, resent after a drop."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import secrets
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from streamsite_client._connection import (
    RETRYABLE,
    ClientConnection,
    Credentials,
    Endpoint,
    Failure,
    Retry,
    closed_failure,
    decode,
    failure_of,
    open_socket,
    raise_if_fatal,
)
from streamsite_client.backoff import Backoff
from streamsite_client.errors import PublisherClosed, PublishError, PublishFailed, StreamsiteError
from streamsite_client.frames import Ack

MAX_ID_LENGTH = 64
# The server takes at most this many samples in one ``values`` frame.
MAX_VALUES_PER_FRAME = 1000
# Error codes about the connection, not about the frame at the head of the window.
CONNECTION_ERRORS = frozenset({"revoked", "too_many_connections"})
# Errors about a frame's content: a batch refused for one of them is retried one
# sample per frame, so that only the bad sample fails.
CONTENT_ERRORS = frozenset({"bad_value", "bad_frame"})


@dataclass(eq=False)
class _Item:
    value: float
    ts: float | None
    id: str
    future: asyncio.Future[Ack]
    solo: bool = False


@dataclass(eq=False)
class _Frame:
    items: list[_Item]
    text: str = field(init=False)

    def __post_init__(self) -> None:
        if len(self.items) == 1:
            item = self.items[0]
            body: dict[str, Any] = {"value": item.value, "id": item.id}
            if item.ts is not None:
                body["ts"] = item.ts
        else:
            body = {"values": [i.value for i in self.items], "ids": [i.id for i in self.items]}
        self.text = json.dumps(body, separators=(",", ":"))


def _settle(future: asyncio.Future[Ack], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
        future.exception()  # retrieved: a caller that never awaits it gets no warning


class Publisher:
    """Publishes samples to one feed over ``/ws/feeds/<uuid>/publish/``.

    ``await send(value)`` queues a sample and returns a future of its Ack. Samples
    queued while the window is full (``window`` frames sent and not yet
    acknowledged) go out together in one ``values`` frame (up to ``max_batch``;
    samples with their own ``ts`` go alone). Every sample carries an ``id``
    (``<random prefix>-<counter>``, or yours): when the connection drops, every
    unacknowledged frame is resent, unchanged, after reconnecting with backoff;
    a server with exactly-once publishing acknowledges one it already stored with
    its original seq and ``duplicate: true`` instead of storing it twice.

    A sample the server refuses (bad_value, quota_exceeded, rate_limited, ...)
    fails its future with PublishError, and the next ``flush()`` raises
    PublishFailed with every such error since the last flush. Close codes 4403
    and 4429, and a 403 at the handshake, fail everything pending with their
    typed error and stop the publisher; others reconnect.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        feed_uuid: str,
        *,
        credentials: Credentials,
        backoff: Backoff,
        open_timeout: float,
        window: int = 1000,
        max_batch: int = MAX_VALUES_PER_FRAME,
        max_queue: int = 10_000,
        id_prefix: str | None = None,
    ) -> None:
        if not credentials.token:
            raise ValueError("a publisher needs the producer's token")
        if not 1 <= max_batch <= MAX_VALUES_PER_FRAME:
            raise ValueError(f"max_batch must be 1..{MAX_VALUES_PER_FRAME}")
        if window < 1 or max_queue < 1:
            raise ValueError("window and max_queue must be at least 1")
        self.feed_uuid = str(feed_uuid)
        self.id_prefix = id_prefix if id_prefix is not None else secrets.token_urlsafe(9)
        self.window = window
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.last_seq: int | None = None  # of the latest ack
        self.acked = 0  # samples acknowledged
        self.reconnects = 0
        self.frames_sent = 0  # frames written, resends included
        self._endpoint = endpoint
        self._credentials = credentials
        self._backoff = backoff
        self._open_timeout = open_timeout
        self._counter = itertools.count(1)
        self._queue: deque[_Item] = deque()  # not sent yet
        self._resend: deque[_Frame] = deque()  # sent on a connection that dropped, unacked
        self._in_flight: deque[_Frame] = deque()  # sent on this connection, unacked
        self._errors: list[PublishError] = []  # refusals since the last flush
        self._changed = asyncio.Condition()
        self._fatal: BaseException | None = None
        self._closing = False  # no more sends
        self._stopping = False  # the connection is being closed on purpose
        self._socket: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None

    # -- the caller's side ------------------------------------------------------

    async def __aenter__(self) -> Publisher:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            await self.close()
        else:
            await self.abort()

    async def start(self) -> None:
        """Connect. A refused handshake (403) raises AccessDenied here; a server that is
        away is retried in the background (samples queue meanwhile)."""
        if self._task is not None:
            return
        socket: ClientConnection | None = None
        failure: Failure | None = None
        try:
            socket = await self._open()
        except RETRYABLE as exc:
            failure = failure_of(exc)
        self._task = asyncio.create_task(self._run(socket, failure), name="streamsite-publisher")

    @property
    def pending(self) -> int:
        """Samples sent or queued and not yet acknowledged or refused."""
        frames = itertools.chain(self._resend, self._in_flight)
        return len(self._queue) + sum(len(frame.items) for frame in frames)

    async def send(
        self, value: float, *, ts: float | None = None, id: str | None = None
    ) -> asyncio.Future[Ack]:
        """Queue one sample; waits only while ``max_queue`` samples are queued unsent.

        Returns a future that resolves to the Ack once the sample is durable, or
        fails with PublishError if the server refused it. ``ts`` (Unix seconds)
        defaults to the server's time of receipt. ``id`` defaults to a fresh one.
        """
        value = _number(value, "value")
        ts = None if ts is None else _number(ts, "ts")
        if id is None:
            id = f"{self.id_prefix}-{next(self._counter)}"
        elif not isinstance(id, str) or not 0 < len(id) <= MAX_ID_LENGTH:
            raise ValueError(f"id must be a string of 1 to {MAX_ID_LENGTH} characters")
        if self._task is None:
            await self.start()
        async with self._changed:
            await self._changed.wait_for(
                lambda: (
                    self._fatal is not None or self._closing or len(self._queue) < self.max_queue
                )
            )
            self._raise_if_stopped()
            future: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
            self._queue.append(_Item(value, ts, id, future))
            self._changed.notify_all()
        return future

    async def send_many(self, values: list[float]) -> list[asyncio.Future[Ack]]:
        return [await self.send(value) for value in values]

    async def flush(self, *, raise_errors: bool = True) -> None:
        """Wait until every sample sent so far is acknowledged (or refused).

        Raises PublishFailed if samples were refused since the last flush (unless
        ``raise_errors`` is false), or the publisher's fatal error (AccessRevoked...).
        """
        async with self._changed:
            await self._changed.wait_for(
                lambda: (
                    self._fatal is not None or not (self._queue or self._resend or self._in_flight)
                )
            )
        if self._fatal is not None:
            raise self._fatal
        errors, self._errors = self._errors, []
        if errors and raise_errors:
            raise PublishFailed(errors)

    async def close(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Flush (waiting for every ack, at most ``timeout`` seconds), then disconnect.

        Raises what flush raises; samples still unacknowledged after ``timeout``
        fail with PublisherClosed (and asyncio.TimeoutError is raised).
        """
        self._closing = True
        try:
            if self._task is not None:
                async with asyncio.timeout(timeout):
                    await self.flush()
        finally:
            await self.abort()

    async def abort(self) -> None:
        """Disconnect now; samples not yet acknowledged fail with PublisherClosed."""
        self._closing = self._stopping = True
        if self._socket is not None:
            with contextlib.suppress(*RETRYABLE):
                await self._socket.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._fail_all(PublisherClosed("the publisher was closed"), fatal=False)

    def _raise_if_stopped(self) -> None:
        if self._fatal is not None:
            raise self._fatal
        if self._closing:
            raise PublisherClosed("the publisher is closing")

    # -- the connection's side ---------------------------------------------------

    def _url(self) -> str:
        return self._endpoint.ws_url(f"/ws/feeds/{self.feed_uuid}/publish/", {})

    async def _open(self) -> ClientConnection:
        headers = self._endpoint.headers(self._credentials, bearer=True)
        return await open_socket(self._url(), headers, open_timeout=self._open_timeout)

    async def _run(self, socket: ClientConnection | None, failure: Failure | None) -> None:
        retry = Retry(self._backoff)
        try:
            while True:
                if socket is not None:
                    failure, error = await self._serve(socket, retry)
                    socket = None
                    await self._requeue_in_flight()
                    if self._stopping:
                        return
                    raise_if_fatal(failure, error)
                assert failure is not None
                await asyncio.sleep(retry.failed(failure.reason, slow=failure.slow))
                try:
                    socket = await self._open()
                    self.reconnects += 1
                except RETRYABLE as exc:
                    failure = failure_of(exc)
        except StreamsiteError as exc:  # AccessDenied, AccessRevoked, GaveUp...
            await self._fail_all(exc, fatal=True)

    async def _serve(
        self, socket: ClientConnection, retry: Retry
    ) -> tuple[Failure, dict[str, Any] | None]:
        """One connection: resend what is unacknowledged, then send and match acks in order."""
        self._socket = socket
        sender = asyncio.create_task(self._send_loop(socket))
        last_error: dict[str, Any] | None = None
        failure: Failure | None = None
        try:
            async for message in socket:
                frame = decode(message)
                if frame is None:
                    continue
                kind = frame.get("type")
                if kind == "ack":
                    retry.succeeded()
                    await self._acknowledged(frame)
                elif kind == "error":
                    code = str(frame.get("error"))
                    if code in CONNECTION_ERRORS:
                        last_error = frame
                    elif code == "unavailable":
                        if self._in_flight:
                            # Not stored: reconnect after a while and resend it all, in order.
                            failure = Failure(f"unavailable: {frame.get('message', '')}", code=1011)
                            break
                    else:
                        await self._refused(frame)
            if failure is None:
                failure = closed_failure(socket)
        except RETRYABLE as exc:
            failure = failure_of(exc)
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, *RETRYABLE):
                await sender
            self._socket = None
            with contextlib.suppress(*RETRYABLE):
                await socket.close()
        return failure, last_error

    async def _send_loop(self, socket: ClientConnection) -> None:
        while True:
            async with self._changed:
                await self._changed.wait_for(
                    lambda: bool(self._resend or self._queue) and len(self._in_flight) < self.window
                )
                frame = self._resend.popleft() if self._resend else self._next_frame()
                self._in_flight.append(frame)
                self._changed.notify_all()
            await socket.send(frame.text)
            self.frames_sent += 1

    def _next_frame(self) -> _Frame:
        """The next frame from the queue: one sample, or consecutive plain samples batched."""
        first = self._queue.popleft()
        items = [first]
        if first.ts is None and not first.solo:
            while (
                self._queue
                and len(items) < self.max_batch
                and self._queue[0].ts is None
                and not self._queue[0].solo
            ):
                items.append(self._queue.popleft())
        return _Frame(items)

    async def _acknowledged(self, frame: dict[str, Any]) -> None:
        async with self._changed:
            if not self._in_flight:
                return  # nothing sent on this connection is waiting: not ours
            sent = self._in_flight.popleft()
            seq = int(frame["seq"])
            seqs = frame.get("seqs")
            if not (isinstance(seqs, list) and len(seqs) == len(sent.items)):
                seqs = list(range(seq - len(sent.items) + 1, seq + 1))
            # "duplicate": every sample of the frame was stored before; "duplicates":
            # the indexes of those that were, when only some were.
            duplicates = frame.get("duplicates")
            if bool(frame.get("duplicate")):
                duplicates = range(len(sent.items))
            elif not isinstance(duplicates, list):
                duplicates = []
            already = set(duplicates)
            for index, (item, item_seq) in enumerate(zip(sent.items, seqs, strict=True)):
                if not item.future.done():
                    item.future.set_result(Ack(int(item_seq), item.id, index in already))
            self.last_seq = seq
            self.acked += len(sent.items)
            self._changed.notify_all()

    async def _refused(self, frame: dict[str, Any]) -> None:
        async with self._changed:
            if not self._in_flight:
                return
            sent = self._in_flight.popleft()
            code = str(frame.get("error"))
            if code in CONTENT_ERRORS and len(sent.items) > 1:
                for item in reversed(sent.items):
                    item.solo = True
                    self._queue.appendleft(item)
            else:
                for item in sent.items:
                    error = PublishError(
                        code, str(frame.get("message", "")), id=item.id, value=item.value
                    )
                    self._errors.append(error)
                    _settle(item.future, error)
            self._changed.notify_all()

    async def _requeue_in_flight(self) -> None:
        async with self._changed:
            self._resend.extendleft(reversed(self._in_flight))
            self._in_flight.clear()
            self._changed.notify_all()

    async def _fail_all(self, exc: BaseException, *, fatal: bool) -> None:
        async with self._changed:
            if fatal:
                self._fatal = exc
            frames = itertools.chain(self._resend, self._in_flight)
            for item in itertools.chain(self._queue, *(frame.items for frame in frames)):
                _settle(item.future, exc)
            self._queue.clear()
            self._resend.clear()
            self._in_flight.clear()
            self._changed.notify_all()


def _number(value: object, name: str) -> float:
    if isinstance(value, bool):
        return int(value)
    if not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name} must be finite")
    return value
