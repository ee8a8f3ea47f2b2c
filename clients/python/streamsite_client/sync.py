"""Blocking wrappers over the async client, for scripts without an event loop.

``streamsite_client.sync.Client`` takes the same arguments as ``streamsite_client.Client``
and runs it on an event loop in a background thread::

    from streamsite_client.sync import Client

    with Client("http://127.0.0.1:8000", key=KEY) as client:
        for sample in client.follow(FEED):
            print(sample.seq, sample.value)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from streamsite_client.backoff import Backoff
from streamsite_client.client import Client as AsyncClient
from streamsite_client.documents import DocumentSession
from streamsite_client.feeds import FeedStream
from streamsite_client.frames import Ack, FeedEvent, Hello, Page, Resync, Sample, Uploaded
from streamsite_client.publisher import Publisher as AsyncPublisher

if TYPE_CHECKING:
    import pandas

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class _AsyncIterator(Protocol[T_co]):
    """An async iterator that can be closed: async generators, SampleIterator, PageIterator."""

    def __anext__(self) -> Awaitable[T_co]: ...

    def aclose(self) -> Awaitable[object]: ...


class _LoopThread:
    """An event loop running in a daemon thread; ``run`` blocks on a coroutine there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="streamsite-client", daemon=True
        )
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if self.loop.is_closed():
            coroutine.close()
            raise RuntimeError("the client is closed")
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def iterate(self, make: Callable[[], _AsyncIterator[T]]) -> Iterator[T]:
        """A blocking iterator over an async iterator made (and closed) on the loop."""

        async def create() -> _AsyncIterator[T]:
            return make()

        async def step(iterator: _AsyncIterator[T]) -> T:
            return await iterator.__anext__()

        async def close(iterator: _AsyncIterator[T]) -> None:
            await iterator.aclose()

        iterator = self.run(create())
        try:
            while True:
                try:
                    yield self.run(step(iterator))
                except StopAsyncIteration:
                    return
        finally:
            if not self.loop.is_closed():
                self.run(close(iterator))

    def close(self) -> None:
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


class Client:
    """Blocking twin of ``streamsite_client.Client`` (same arguments). Close it when done
    (``with Client(...) as client:``): that stops its background thread."""

    def __init__(self, base_url: str, **options: Any) -> None:
        self.aio = AsyncClient(base_url, **options)
        self._thread = _LoopThread()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._thread.close()

    def follow(
        self,
        feed_uuid: str,
        since: int | None = None,
        *,
        key: str | None = None,
        session_cookie: str | None = None,
        on_resync: Callable[[Resync], None] | None = None,
        backoff: Backoff | None = None,
    ) -> Feed:
        """The feed's samples, live, without gap or duplicate: ``for sample in client.follow(u)``."""
        stream = self.aio.follow(
            feed_uuid, since, key=key, session_cookie=session_cookie, on_resync=on_resync,
            backoff=backoff,
        )  # fmt: skip
        return Feed(stream, self._thread)

    def publisher(self, feed_uuid: str, *, token: str | None = None, **options: Any) -> Publisher:
        """A connected publisher: ``with client.publisher(uuid, token=T) as pub: pub.send(1)``."""

        async def make() -> AsyncPublisher:
            publisher = self.aio.publisher(feed_uuid, token=token, **options)
            await publisher.start()
            return publisher

        return Publisher(self._thread.run(make()), self._thread)

    def document(
        self, document_uuid: str, *, key: str | None = None, session_cookie: str | None = None
    ) -> Document:
        """A connected session on a document (AccessDenied if refused)."""

        async def make() -> DocumentSession:
            session = self.aio.document(document_uuid, key=key, session_cookie=session_cookie)
            await session.start()
            return session

        return Document(self._thread.run(make()), self._thread)

    def follow_document(
        self, document_uuid: str, *, key: str | None = None, session_cookie: str | None = None
    ) -> Iterator[Page]:
        return self._thread.iterate(
            lambda: self.aio.follow_document(document_uuid, key=key, session_cookie=session_cookie)
        )

    def history(self, feed_uuid: str, **options: Any) -> list[Sample]:
        """``Client.history``: the stored samples as rows (since=, limit=, key=, session_cookie=)."""
        return self._thread.run(self.aio.history(feed_uuid, **options))

    def history_dataframe(self, feed_uuid: str, **options: Any) -> pandas.DataFrame:
        return self._thread.run(self.aio.history_dataframe(feed_uuid, **options))


class Feed:
    """A followed feed: iterate for samples; ``events()`` for everything; ``close()``."""

    def __init__(self, stream: FeedStream, thread: _LoopThread) -> None:
        self.stream = stream
        self._thread = thread

    def __iter__(self) -> Iterator[Sample]:
        return self._thread.iterate(self.stream.samples)

    def events(self) -> Iterator[FeedEvent]:
        return self._thread.iterate(self.stream.events)

    @property
    def last_seq(self) -> int | None:
        return self.stream.last_seq

    @property
    def hello(self) -> Hello | None:
        return self.stream.hello

    def __enter__(self) -> Feed:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._thread.run(self.stream.aclose())


class Publisher:
    """Blocking twin of ``streamsite_client.Publisher``; ``send`` returns a
    ``concurrent.futures.Future`` of the Ack (``.result()`` blocks for it)."""

    def __init__(self, publisher: AsyncPublisher, thread: _LoopThread) -> None:
        self.aio = publisher
        self._thread = thread

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.close()
        else:
            self._thread.run(self.aio.abort())

    def send(
        self, value: float, *, ts: float | None = None, id: str | None = None
    ) -> concurrent.futures.Future[Ack]:
        async def queue() -> concurrent.futures.Future[Ack]:
            future = await self.aio.send(value, ts=ts, id=id)
            result: concurrent.futures.Future[Ack] = concurrent.futures.Future()

            def copy(done: asyncio.Future[Ack]) -> None:
                if done.cancelled():
                    result.cancel()
                elif done.exception() is not None:
                    result.set_exception(done.exception())
                else:
                    result.set_result(done.result())

            future.add_done_callback(copy)
            return result

        return self._thread.run(queue())

    def flush(self, *, raise_errors: bool = True, timeout: float | None = None) -> None:
        self._thread.run(self.aio.flush(raise_errors=raise_errors), timeout)

    def close(self, timeout: float | None = None) -> None:
        self._thread.run(self.aio.close(timeout))

    @property
    def pending(self) -> int:
        return self.aio.pending

    @property
    def last_seq(self) -> int | None:
        return self.aio.last_seq


class Document:
    """Blocking twin of ``streamsite_client.DocumentSession``."""

    def __init__(self, session: DocumentSession, thread: _LoopThread) -> None:
        self.aio = session
        self._thread = thread

    def __enter__(self) -> Document:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def page(self) -> Page | None:
        return self.aio.page

    def pages(self) -> Iterator[Page]:
        return self._thread.iterate(self.aio.pages)

    def turn(self, page_no: int) -> Page:
        return self._thread.run(self.aio.turn(page_no))

    def upload(self, data: bytes | str) -> Uploaded:
        return self._thread.run(self.aio.upload(data))

    def close(self) -> None:
        self._thread.run(self.aio.close())
