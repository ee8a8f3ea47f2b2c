"""How large an HTTP request body may be, per route, and the 413 that refuses a larger one.

Django reads a request's whole body before any view can look at it (and the
ASGI handler spools it before the middleware runs), so a size check in a view
comes after the memory is spent. The limit is therefore applied where the
bytes arrive: by ``streamsite.server`` in Daphne's HTTP layer (``Content-Length``
as soon as the headers are in, a running count for chunked bodies) and, for
other ASGI servers (``manage.py runserver``, uvicorn), by ``BodyLimitApp`` in
front of Django. Both use ``body_limit`` and ``too_large_body`` from here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.urls import Resolver404, resolve

from streamsite import frames
from streamsite.frames import encode

# A multipart form around a document: boundaries, part headers, the CSRF token.
MULTIPART_OVERHEAD_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class BodyLimit:
    setting: str
    max_bytes: int


@functools.lru_cache(maxsize=4096)
def _url_name(path: str) -> str | None:
    # Every request (WebSocket upgrades too) asks before its body: a reconnect
    # storm asks for the same few paths thousands of times a second.
    try:
        return resolve(path).url_name
    except Resolver404:
        return None


def body_limit(path: str) -> BodyLimit:
    """The largest body accepted for a request to ``path`` (query string allowed)."""
    url_name = _url_name(path.split("?", 1)[0])
    if url_name == "document-upload":
        return BodyLimit(
            "DOCUMENT_MAX_BYTES", settings.DOCUMENT_MAX_BYTES + MULTIPART_OVERHEAD_BYTES
        )
    if url_name == "feed-publish":
        return BodyLimit("PUBLISH_MAX_BYTES", settings.PUBLISH_MAX_BYTES)
    return BodyLimit("HTTP_MAX_BODY_BYTES", settings.HTTP_MAX_BODY_BYTES)


def too_large_body(limit: BodyLimit) -> bytes:
    """The JSON body of the 413 answer."""
    return encode(
        frames.error(
            frames.ErrorCode.TOO_LARGE,
            f"request bodies here are limited to {limit.max_bytes:,} bytes",
            limit=limit.setting,
        )
    ).encode()


def content_length(headers: Any) -> int | None:
    """The declared length from ASGI headers; None when absent or unreadable."""
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyLimitApp:
    """ASGI middleware for HTTP: refuses an oversized body before Django buffers it.

    A declared ``Content-Length`` over the limit is answered at once, without
    reading the body. A body without one is counted as it is received; past the
    limit the application is told the client went away (so Django drops the
    request unread) and the client gets the 413.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = body_limit(scope["path"])
        declared = content_length(scope.get("headers", ()))
        if declared is not None and declared > limit.max_bytes:
            return await self._refuse(send, limit)
        received = 0
        refused = False

        async def counting_receive() -> dict[str, Any]:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit.max_bytes:
                    refused = True
                    return {"type": "http.disconnect"}
            return message

        await self.app(scope, counting_receive, send)
        if refused:
            await self._refuse(send, limit)

    @staticmethod
    async def _refuse(send: Any, limit: BodyLimit) -> None:
        body = too_large_body(limit)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
