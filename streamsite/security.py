"""WebSocket Origin policy: the session cookie only counts for same-site pages.

A browser sends cookies with a WebSocket handshake whatever page opened it, so
a socket authorised by the session must come from one of our own pages
(cross-site WebSocket hijacking). Instead of refusing every other handshake,
the gate removes the cookies from it: the connection then carries no ambient
authority, and only explicit credentials (a producer token, a share key) can
authorise it. Consumers see the foreign origin in ``scope["foreign_origin"]``
so that a share key can be limited to the sites its owner listed.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.db import DatabaseError
from django.http.request import validate_host

log = logging.getLogger(__name__)


def trusted_hosts() -> list[str]:
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        hosts = [".localhost", "127.0.0.1", "[::1]"]
    return hosts


def origin_of(scope: dict[str, Any]) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"origin":
            return value.decode("latin-1")
    return None


def origin_is_trusted(origin: str | None) -> bool:
    """True for an Origin naming one of our hosts (never for None, "null" or look-alikes).

    Only the form browsers send, ``scheme://host[:port]``, is trusted: with user
    info (``http://evil.example@ourhost``), a path or a fragment, which parsers
    read differently, the origin is foreign.
    """
    if not origin or origin == "null":
        return False
    try:
        parts = urlsplit(origin)
        hostname = parts.hostname
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not hostname:
        return False
    if "@" in parts.netloc or "\\" in origin or parts.path or parts.query or parts.fragment:
        return False
    if ":" in hostname:
        hostname = f"[{hostname}]"
    return validate_host(hostname, trusted_hosts())


class OriginGate:
    """ASGI middleware for WebSockets, outside the session/auth middleware.

    A handshake that carries no cookie (a script with a key or token, or any
    cross-site page once its cookies are stripped) has no session to load, so
    it skips the session and auth middleware and gets an anonymous user: less
    work and less memory per connection, which matters with thousands of viewers.
    """

    def __init__(self, app: Any, *, without_session: Any | None = None) -> None:
        self.app = app
        self.without_session = without_session

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        # Daphne builds a fresh scope per connection, so it is annotated in
        # place rather than copied (one copy fewer per connection).
        origin = origin_of(scope)
        if origin_is_trusted(origin):
            scope["foreign_origin"] = None
        else:
            scope["headers"] = [(n, v) for n, v in scope.get("headers", ()) if n != b"cookie"]
            scope["foreign_origin"] = origin or ""
        if self.without_session is not None and not any(
            name == b"cookie" for name, _ in scope.get("headers", ())
        ):
            scope["user"] = AnonymousUser()
            return await self.without_session(scope, receive, send)
        try:
            return await self.app(scope, receive, send)
        except DatabaseError as exc:
            # Loading the session needs the database: refuse the handshake
            # instead of answering 500 (consumers handle later outages themselves).
            log.warning("handshake of %s: database unavailable (%s)", scope.get("path"), exc)
            await send({"type": "websocket.close", "code": 1011})
