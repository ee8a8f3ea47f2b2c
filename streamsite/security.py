"""WebSocket Origin policy: the session cookie only counts for the site's own pages.

A browser sends cookies with a WebSocket handshake whatever page opened it, so
a socket authorised by the session must come from one of our own pages
(cross-site WebSocket hijacking). Instead of refusing every other handshake,
the gate removes the cookies from it: the connection then carries no ambient
authority, and only explicit credentials (a producer token, a share key) can
authorise it. Consumers see the foreign origin in ``scope["foreign_origin"]``
so that a share key can be limited to the sites its owner listed.

"Our own pages" means the exact origins the site is served from: scheme, host
and port (``site_origins``). A page on another port of the same host is
another site to a browser, and may be anyone's (a development server, another
service); it must not borrow the user's cookies.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ImproperlyConfigured
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


_DEFAULT_PORTS = {"http": 80, "https": 443}


class Origin(NamedTuple):
    scheme: str
    host: str  # bracketed for IPv6; for a site origin, an ALLOWED_HOSTS-style pattern
    port: int


def parse_origin(origin: str | None) -> Origin | None:
    """The Origin in the only form browsers send, ``scheme://host[:port]``; None otherwise.

    With user info (``http://evil.example@ourhost``), a path, a query or a
    fragment, which parsers read differently, the origin is foreign.
    """
    if not origin or origin == "null":
        return None
    try:
        parts = urlsplit(origin)
        hostname, port = parts.hostname, parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not hostname:
        return None
    if "@" in parts.netloc or "\\" in origin or parts.path or parts.query or parts.fragment:
        return None
    if ":" in hostname:
        hostname = f"[{hostname}]"
    return Origin(parts.scheme, hostname, port or _DEFAULT_PORTS[parts.scheme])


@functools.lru_cache(maxsize=8)
def _site_origins(configured: tuple[str, ...], csrf_trusted: tuple[str, ...]) -> tuple[Origin, ...]:
    origins = []
    for entry in (*configured, *csrf_trusted):
        # CSRF_TRUSTED_ORIGINS writes subdomains as https://*.example.org;
        # ALLOWED_HOSTS (and so validate_host) as .example.org.
        parsed = parse_origin(entry.replace("://*.", "://."))
        if parsed is None:
            raise ImproperlyConfigured(f"not an origin (scheme://host[:port]): {entry!r}")
        origins.append(parsed)
    return tuple(origins)


def site_origins() -> tuple[Origin, ...]:
    """Where the site's pages are served: SITE_ORIGINS, else https:// on every allowed host.

    CSRF_TRUSTED_ORIGINS count too: a page trusted to post forms with the
    session is trusted to open sockets with it.
    """
    configured = settings.SITE_ORIGINS or [f"https://{host}" for host in trusted_hosts()]
    return _site_origins(tuple(configured), tuple(settings.CSRF_TRUSTED_ORIGINS))


def origin_is_trusted(origin: str | None) -> bool:
    """True for an Origin equal to one of the site's (never for None, "null" or look-alikes)."""
    parsed = parse_origin(origin)
    if parsed is None:
        return False
    return any(
        parsed.scheme == site.scheme
        and parsed.port == site.port
        and validate_host(parsed.host, [site.host])
        for site in site_origins()
    )


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
