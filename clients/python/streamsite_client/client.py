"""The entry point: ``Client(base_url, key=..., token=..., session_cookie=...)``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING

from streamsite_client._connection import Credentials, Endpoint
from streamsite_client.backoff import Backoff
from streamsite_client.documents import DocumentSession
from streamsite_client.feeds import FeedStream
from streamsite_client.frames import Page, Resync, Sample
from streamsite_client.history import fetch_all, to_dataframe
from streamsite_client.publisher import MAX_VALUES_PER_FRAME, Publisher

if TYPE_CHECKING:
    import pandas


class Client:
    """A Streamsite server and the credentials to use with it (each call may override them).

    - ``key``: a share key, for following feeds and documents and reading history;
    - ``token``: a producer token, for publishing;
    - ``session_cookie``: a signed-in session (``sessionid=...`` or the bare id), sent
      with ``Origin: <base_url>``: the server honours a cookie only from its own origin.

    ``backoff`` paces reconnections (``Backoff()``: 0.5 s doubling to 30 s, with jitter);
    ``open_timeout`` bounds each handshake.
    """

    def __init__(
        self,
        base_url: str,
        *,
        key: str | None = None,
        token: str | None = None,
        session_cookie: str | None = None,
        origin: str | None = None,
        backoff: Backoff | None = None,
        open_timeout: float = 10.0,
        http_timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url
        self.endpoint = Endpoint(base_url)
        self.credentials = Credentials(
            key=key, token=token, session_cookie=session_cookie, origin=origin
        )
        self.backoff = backoff or Backoff()
        self.open_timeout = open_timeout
        self.http_timeout = http_timeout

    def _credentials(
        self, key: str | None, token: str | None, session_cookie: str | None
    ) -> Credentials:
        base = self.credentials
        return Credentials(
            key=key if key is not None else base.key,
            token=token if token is not None else base.token,
            session_cookie=session_cookie if session_cookie is not None else base.session_cookie,
            origin=base.origin,
        )

    # -- feeds ---------------------------------------------------------------------

    def follow(
        self,
        feed_uuid: str,
        since: int | None = None,
        *,
        key: str | None = None,
        session_cookie: str | None = None,
        on_resync: Callable[[Resync], None] | None = None,
        backoff: Backoff | None = None,
    ) -> FeedStream:
        """The feed's samples after ``since`` (None: from now on), live, without gap or
        duplicate: ``async for sample in client.follow(uuid)``. See FeedStream."""
        return FeedStream(
            self.endpoint,
            feed_uuid,
            since=since,
            credentials=self._credentials(key, None, session_cookie),
            backoff=backoff or self.backoff,
            open_timeout=self.open_timeout,
            on_resync=on_resync,
        )

    def publisher(
        self,
        feed_uuid: str,
        *,
        token: str | None = None,
        window: int = 1000,
        max_batch: int = MAX_VALUES_PER_FRAME,
        max_queue: int = 10_000,
        id_prefix: str | None = None,
        backoff: Backoff | None = None,
    ) -> Publisher:
        """A publisher for the feed: ``async with client.publisher(uuid, token=T) as pub``."""
        return Publisher(
            self.endpoint,
            feed_uuid,
            credentials=self._credentials(None, token, None),
            backoff=backoff or self.backoff,
            open_timeout=self.open_timeout,
            window=window,
            max_batch=max_batch,
            max_queue=max_queue,
            id_prefix=id_prefix,
        )

    async def history(
        self,
        feed_uuid: str,
        *,
        since: int | None = None,
        limit: int | None = None,
        key: str | None = None,
        session_cookie: str | None = None,
    ) -> list[Sample]:
        """The stored samples after ``since`` (None: the oldest kept), at most ``limit``
        (None: all), oldest first, as Sample rows."""
        credentials = self._credentials(key, None, session_cookie)
        return await asyncio.to_thread(
            fetch_all,
            self.endpoint,
            str(feed_uuid),
            credentials,
            since=since,
            limit=limit,
            timeout=self.http_timeout,
        )

    async def history_dataframe(
        self,
        feed_uuid: str,
        *,
        since: int | None = None,
        limit: int | None = None,
        key: str | None = None,
        session_cookie: str | None = None,
    ) -> pandas.DataFrame:
        """``history`` as a pandas DataFrame indexed by seq (needs pandas)."""
        rows = await self.history(
            feed_uuid, since=since, limit=limit, key=key, session_cookie=session_cookie
        )
        return to_dataframe(rows)

    # -- documents -----------------------------------------------------------------

    def document(
        self,
        document_uuid: str,
        *,
        key: str | None = None,
        session_cookie: str | None = None,
        backoff: Backoff | None = None,
    ) -> DocumentSession:
        """A session on a shared document: ``async with client.document(uuid) as doc``."""
        return DocumentSession(
            self.endpoint,
            document_uuid,
            credentials=self._credentials(key, None, session_cookie),
            backoff=backoff or self.backoff,
            open_timeout=self.open_timeout,
        )

    async def follow_document(
        self,
        document_uuid: str,
        *,
        key: str | None = None,
        session_cookie: str | None = None,
    ) -> AsyncGenerator[Page, None]:
        """The shared page now and after every change: ``async for page in ...``."""
        async with self.document(document_uuid, key=key, session_cookie=session_cookie) as doc:
            async for page in doc.pages():
                yield page
