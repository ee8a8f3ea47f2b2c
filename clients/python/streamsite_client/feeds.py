"""Following a feed: every sample once, in order, across reconnections."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable
from types import TracebackType
from typing import Any

from streamsite_client._connection import (
    RETRYABLE,
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
from streamsite_client.errors import ResyncError
from streamsite_client.frames import Disconnected, FeedEvent, Hello, Presence, Resync, Sample


class FeedStream:
    """The samples of one feed, live, as an async iterator (``async for s in stream``).

    It connects to ``/ws/feeds/<uuid>/``, and whenever the connection drops it
    reconnects with backoff and ``?since=<last seq>``, so it never yields a gap or
    a duplicate. When samples are lost for good (the server sends ``resync``: they
    are no longer kept, or were more than FEED_REPLAY_LIMIT behind; or a gap that
    a reconnection could not fill), iterating raises ResyncError, unless
    ``on_resync`` was given: then it is called with the Resync and the stream goes
    on. Close codes 4403, 4429 and 4400 (and a 403 at the handshake) raise their
    typed error and stop; 1011 and 1013 back off longer; any other reconnects.

    ``events()`` yields everything (Hello, Sample, Resync, Presence,
    Disconnected) for callers that want to show the connection's state.
    ``last_seq`` is the last sample delivered (or the hello's ``last_seq`` before
    any), ``hello`` the latest Hello.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        feed_uuid: str,
        *,
        since: int | None,
        credentials: Credentials,
        backoff: Backoff,
        open_timeout: float,
        on_resync: Callable[[Resync], None] | None = None,
    ) -> None:
        if since is not None and (isinstance(since, bool) or since < 0):
            raise ValueError("since must be a sequence number (0 or more)")
        self.feed_uuid = str(feed_uuid)
        self.last_seq: int | None = since
        self.hello: Hello | None = None
        self.watching: int | None = None
        self._endpoint = endpoint
        self._credentials = credentials
        self._backoff = backoff
        self._open_timeout = open_timeout
        self._on_resync = on_resync
        self._iterators: list[AsyncGenerator[Any, None]] = []

    def __aiter__(self) -> SampleIterator:
        return self.samples()

    def samples(self) -> SampleIterator:
        """The samples (what ``async for sample in stream`` iterates)."""
        return SampleIterator(self.events(), self._on_resync)

    def events(self) -> AsyncGenerator[FeedEvent, None]:
        """Every event: Hello (each connection), Sample, Resync, Presence, Disconnected."""
        events = self._events()
        self._iterators.append(events)
        return events

    async def __aenter__(self) -> FeedStream:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection now (it is also closed when iteration ends)."""
        for iterator in self._iterators:
            await iterator.aclose()
        self._iterators.clear()

    def _url(self) -> str:
        query = {"key": self._credentials.key, "since": self.last_seq}
        return self._endpoint.ws_url(f"/ws/feeds/{self.feed_uuid}/", query)

    async def _events(self) -> AsyncGenerator[FeedEvent, None]:
        retry = Retry(self._backoff)
        gap_at: int | None = None  # a gap seen after this seq: reconnect once to fill it
        while True:
            resync: dict[str, Any] | None = None  # a resync frame, until its hello comes
            last_error: dict[str, Any] | None = None
            failure: Failure
            try:
                socket = await open_socket(
                    self._url(),
                    self._endpoint.headers(self._credentials),
                    open_timeout=self._open_timeout,
                )
            except RETRYABLE as exc:
                failure = failure_of(exc)
            else:
                try:
                    async for message in socket:
                        frame = decode(message)
                        if frame is None:
                            continue
                        kind = frame.get("type")
                        if kind == "hello":
                            retry.succeeded()
                            hello = Hello.from_frame(frame)
                            self.hello, self.watching = hello, hello.watching
                            if resync is not None:
                                event = Resync(
                                    reason=str(resync.get("reason", "")),
                                    since=int(resync.get("since") or 0),
                                    resume_seq=hello.last_seq,
                                    oldest_seq=resync.get("oldest_seq"),
                                )
                                resync, self.last_seq = None, hello.last_seq
                                yield event
                            elif self.last_seq is None:
                                self.last_seq = hello.last_seq
                            yield hello
                        elif kind == "sample":
                            sample = Sample.from_frame(frame)
                            last = self.last_seq if self.last_seq is not None else sample.seq - 1
                            if sample.seq <= last:
                                continue  # already delivered
                            if sample.seq > last + 1:
                                if gap_at != last:
                                    gap_at = last
                                    break  # reconnect with since=last: the server replays
                                yield Resync(
                                    reason="gap the server could not fill",
                                    since=last,
                                    resume_seq=sample.seq - 1,
                                    oldest_seq=None,
                                )
                            gap_at = None
                            self.last_seq = sample.seq
                            yield sample
                        elif kind == "resync":
                            resync = frame
                        elif kind == "presence":
                            self.watching = int(frame.get("watching") or 0)
                            yield Presence(self.watching)
                        elif kind == "error":
                            last_error = frame
                except RETRYABLE as exc:
                    failure = failure_of(exc)
                else:
                    failure = closed_failure(socket) if socket.close_code else Failure("gap")
                finally:
                    with contextlib.suppress(*RETRYABLE):
                        await socket.close()
                raise_if_fatal(failure, last_error)
            if failure.reason == "gap":
                continue  # at once: the replay fills it
            delay = retry.failed(failure.reason, slow=failure.slow)
            yield Disconnected(failure.reason, delay, code=failure.code, status=failure.status)
            await asyncio.sleep(delay)


class SampleIterator:
    """The samples of a FeedStream's events; raises ResyncError on a Resync unless
    ``on_resync`` takes it. (A plain iterator over the one async generator that owns
    the connection, so that closing either closes the connection exactly once.)"""

    def __init__(
        self,
        events: AsyncGenerator[FeedEvent, None],
        on_resync: Callable[[Resync], None] | None,
    ) -> None:
        self._events = events
        self._on_resync = on_resync

    def __aiter__(self) -> SampleIterator:
        return self

    async def __anext__(self) -> Sample:
        while True:
            event = await self._events.__anext__()
            if isinstance(event, Sample):
                return event
            if isinstance(event, Resync):
                if self._on_resync is None:
                    await self._events.aclose()
                    raise ResyncError(event)
                self._on_resync(event)

    async def aclose(self) -> None:
        await self._events.aclose()
