"""Shared documents: follow the shared page, turn it, upload new versions."""

from __future__ import annotations

import asyncio
import contextlib
import json
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
from streamsite_client.errors import ConnectionLost, DocumentError, StreamsiteError
from streamsite_client.frames import Page, Uploaded

# Pages hold DOCUMENT_PAGE_SIZE rows of fields of any length: allow big frames.
MAX_FRAME_BYTES = 64 * 2**20


@dataclass(eq=False)
class _Request:
    kind: str  # "turn" or "upload"
    page_no: int | None
    future: asyncio.Future[Any] = field(repr=False)


class DocumentSession:
    """One document over ``/ws/documents/<uuid>/``, reconnecting with backoff.

    ``page`` is the shared page as last seen; ``pages()`` yields it and then
    every change (a page turn by anyone, a new version), each state once, in
    order, across reconnections. ``turn(n)`` moves everyone to page n and returns
    that page; ``upload(data)`` makes a new version from a whole TSV file and
    returns Uploaded. Refusals raise DocumentError (out_of_range, forbidden,
    invalid_tsv, too_large, ...); a request whose connection dropped before the
    answer raises ConnectionLost (it may or may not have been done). A 403 at the
    handshake raises AccessDenied; 4403/4429 raise their typed errors.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        document_uuid: str,
        *,
        credentials: Credentials,
        backoff: Backoff,
        open_timeout: float,
    ) -> None:
        self.document_uuid = str(document_uuid)
        self.page: Page | None = None
        self.watching: int | None = None
        self._endpoint = endpoint
        self._credentials = credentials
        self._backoff = backoff
        self._open_timeout = open_timeout
        self._socket: ClientConnection | None = None
        self._connected = asyncio.Event()
        self._first_page = asyncio.Event()
        self._requests: deque[_Request] = deque()
        self._subscribers: list[asyncio.Queue[Page | BaseException]] = []
        self._fatal: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def __aenter__(self) -> DocumentSession:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> Page:
        """Connect and return the shared page (AccessDenied if refused; a server that is
        away is retried with backoff until it answers)."""
        if self._task is None:
            socket: ClientConnection | None = None
            failure: Failure | None = None
            try:
                socket = await self._open()
            except RETRYABLE as exc:  # the server is away: keep trying in the background
                failure = failure_of(exc)
            self._task = asyncio.create_task(self._run(socket, failure), name="streamsite-document")
        return await self.current()

    async def current(self) -> Page:
        """The shared page (waits for the first one)."""
        waiter = asyncio.ensure_future(self._first_page.wait())
        task = self._task
        if task is not None and not waiter.done():
            await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
        if self.page is None:
            waiter.cancel()
            raise self._fatal or ConnectionLost("closed before the first page")
        return self.page

    async def close(self) -> None:
        self._closing = True
        if self._socket is not None:
            with contextlib.suppress(*RETRYABLE):
                await self._socket.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._drop_requests(ConnectionLost("the session was closed"))
        self._tell_subscribers(self._fatal or StopAsyncIteration())

    def pages(self) -> PageIterator:
        """The shared page now, then after every change, until the session closes."""
        queue: asyncio.Queue[Page | BaseException] = asyncio.Queue()
        if self.page is not None:
            queue.put_nowait(self.page)
        if self._fatal is not None:
            queue.put_nowait(self._fatal)
        elif self._closing:
            queue.put_nowait(StopAsyncIteration())
        self._subscribers.append(queue)
        return PageIterator(self, queue)

    async def turn(self, page_no: int) -> Page:
        """Move every viewer to page ``page_no`` of the current version."""
        if isinstance(page_no, bool) or not isinstance(page_no, int):
            raise TypeError("page_no must be a whole number")
        result: Page = await self._request(
            "turn", page_no, json.dumps({"type": "page", "page_no": page_no})
        )
        return result

    async def upload(self, data: bytes | str) -> Uploaded:
        """Upload a whole TSV file (one binary frame) as the document's new version."""
        payload = data.encode() if isinstance(data, str) else bytes(data)
        result: Uploaded = await self._request("upload", None, payload)
        return result

    async def _request(self, kind: str, page_no: int | None, payload: str | bytes) -> Any:
        if self._task is None:
            await self.start()
        while self._socket is None:
            if self._fatal is not None:
                raise self._fatal
            if self._closing:
                raise ConnectionLost("the session is closed")
            await self._connected.wait()
        socket = self._socket
        request = _Request(kind, page_no, asyncio.get_running_loop().create_future())
        self._requests.append(request)
        try:
            await socket.send(payload)
        except RETRYABLE as exc:
            with contextlib.suppress(ValueError):
                self._requests.remove(request)
            raise ConnectionLost(f"the connection dropped: {exc!r}") from exc
        return await request.future

    # -- the connection's side ---------------------------------------------------

    def _url(self) -> str:
        query = {"key": self._credentials.key}
        return self._endpoint.ws_url(f"/ws/documents/{self.document_uuid}/", query)

    def _headers(self) -> dict[str, str]:
        return self._endpoint.headers(self._credentials)

    async def _open(self) -> ClientConnection:
        return await open_socket(
            self._url(), self._headers(), open_timeout=self._open_timeout, max_size=MAX_FRAME_BYTES
        )

    async def _run(self, socket: ClientConnection | None, failure: Failure | None) -> None:
        retry = Retry(self._backoff)
        try:
            while True:
                if socket is not None:
                    failure, error = await self._serve(socket, retry)
                    socket = None
                    self._drop_requests(
                        ConnectionLost(f"the connection dropped ({failure.reason})")
                    )
                    if self._closing:
                        return
                    raise_if_fatal(failure, error)
                assert failure is not None
                await asyncio.sleep(retry.failed(failure.reason, slow=failure.slow))
                try:
                    socket = await self._open()
                except RETRYABLE as exc:
                    failure = failure_of(exc)
        except StreamsiteError as exc:
            self._fatal = exc
            self._drop_requests(exc)
            self._tell_subscribers(exc)

    async def _serve(
        self, socket: ClientConnection, retry: Retry
    ) -> tuple[Failure, dict[str, Any] | None]:
        self._socket = socket
        self._connected.set()
        last_error: dict[str, Any] | None = None
        try:
            async for message in socket:
                frame = decode(message)
                if frame is None:
                    continue
                kind = frame.get("type")
                if kind == "page":
                    retry.succeeded()
                    self._take_page(Page.from_frame(frame))
                elif kind == "uploaded":
                    self._answer("upload", Uploaded.from_frame(frame))
                elif kind == "presence":
                    self.watching = int(frame.get("watching") or 0)
                elif kind == "error":
                    if self._requests and frame.get("error") not in (
                        "revoked",
                        "too_many_connections",
                    ):
                        request = self._requests.popleft()
                        if not request.future.done():
                            request.future.set_exception(DocumentError(frame))
                    else:
                        last_error = frame
            failure = closed_failure(socket)
        except RETRYABLE as exc:
            failure = failure_of(exc)
        finally:
            self._socket = None
            self._connected.clear()
            with contextlib.suppress(*RETRYABLE):
                await socket.close()
        return failure, last_error

    def _take_page(self, page: Page) -> None:
        if self.page is None or page.state > self.page.state:
            self.page = page
            self._first_page.set()
            for queue in self._subscribers:
                queue.put_nowait(page)
        # The answer to our turn is the page frame with that number (the server
        # sends the requester its own page frame even if a broadcast came first).
        if self._requests and self._requests[0].kind == "turn":
            if self._requests[0].page_no == page.page_no:
                self._answer("turn", page)

    def _answer(self, kind: str, value: Any) -> None:
        if self._requests and self._requests[0].kind == kind:
            request = self._requests.popleft()
            if not request.future.done():
                request.future.set_result(value)

    def _drop_requests(self, exc: BaseException) -> None:
        while self._requests:
            future = self._requests.popleft().future
            if not future.done():
                future.set_exception(exc)
                future.exception()

    def _tell_subscribers(self, item: BaseException) -> None:
        for queue in self._subscribers:
            queue.put_nowait(item)


class PageIterator:
    """``async for page in session.pages()``: each new shared page, in order."""

    def __init__(
        self, session: DocumentSession, queue: asyncio.Queue[Page | BaseException]
    ) -> None:
        self._session = session
        self._queue = queue

    def __aiter__(self) -> PageIterator:
        return self

    async def __anext__(self) -> Page:
        item = await self._queue.get()
        if isinstance(item, BaseException):
            await self.aclose()
            if isinstance(item, StopAsyncIteration):
                raise StopAsyncIteration
            raise item
        return item

    async def aclose(self) -> None:
        with contextlib.suppress(ValueError):
            self._session._subscribers.remove(self._queue)
        self._queue.put_nowait(StopAsyncIteration())
