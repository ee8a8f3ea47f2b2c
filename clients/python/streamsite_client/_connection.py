"""Addresses, credentials and opening a WebSocket: what every part of the client shares."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import websockets
from websockets.asyncio.client import ClientConnection

from streamsite_client.backoff import Retry
from streamsite_client.errors import FATAL_CLOSE_CODES, SLOW_CLOSE_CODES, AccessDenied


@dataclass(frozen=True)
class Credentials:
    """How a connection authenticates: a share key, a producer token or a session cookie."""

    key: str | None = None
    token: str | None = None
    session_cookie: str | None = None
    origin: str | None = None


def cookie_header(session_cookie: str) -> str:
    """Accept ``sessionid=...`` (or any ``name=value; ...``) or a bare session id."""
    return session_cookie if "=" in session_cookie else f"sessionid={session_cookie}"


class Endpoint:
    """A Streamsite server at ``base_url`` (``http(s)://host[:port]``, a path prefix allowed)."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url if "://" in base_url else f"http://{base_url}")
        if parts.scheme not in ("http", "https", "ws", "wss"):
            raise ValueError(f"base_url must be http(s)://host[:port], not {base_url!r}")
        secure = parts.scheme in ("https", "wss")
        self.http_scheme = "https" if secure else "http"
        self.ws_scheme = "wss" if secure else "ws"
        self.netloc = parts.netloc
        self.prefix = parts.path.rstrip("/")

    @property
    def origin(self) -> str:
        return f"{self.http_scheme}://{self.netloc}"

    def ws_url(self, path: str, query: dict[str, Any]) -> str:
        return self._url(self.ws_scheme, path, query)

    def http_url(self, path: str, query: dict[str, Any]) -> str:
        return self._url(self.http_scheme, path, query)

    def _url(self, scheme: str, path: str, query: dict[str, Any]) -> str:
        pairs = {name: str(value) for name, value in query.items() if value is not None}
        return urlunsplit((scheme, self.netloc, self.prefix + path, urlencode(pairs), ""))

    def headers(self, credentials: Credentials, *, bearer: bool = False) -> dict[str, str]:
        """Headers for a request: the token as Bearer; the session cookie with our Origin
        (the server honours a cookie only from its own origin)."""
        headers: dict[str, str] = {}
        if bearer and credentials.token:
            headers["Authorization"] = f"Bearer {credentials.token}"
        if credentials.session_cookie:
            headers["Cookie"] = cookie_header(credentials.session_cookie)
            headers["Origin"] = credentials.origin or self.origin
        return headers


async def open_socket(
    url: str, headers: dict[str, str], *, open_timeout: float, max_size: int | None = 2**20
) -> ClientConnection:
    """Open a WebSocket; a 403 at the handshake raises AccessDenied (never worth a retry)."""
    try:
        return await websockets.connect(
            url,
            additional_headers=headers,
            open_timeout=open_timeout,
            max_size=max_size,
            user_agent_header="streamsite-client",
        )
    except websockets.InvalidStatus as exc:
        if exc.response.status_code == 403:
            raise AccessDenied(url.split("?")[0], 403) from exc
        raise


def decode(message: str | bytes) -> dict[str, Any] | None:
    """A frame as a dict, or None if it is not a JSON object (plain-format frames, noise)."""
    try:
        frame = json.loads(message)
    except (ValueError, RecursionError):
        return None
    return frame if isinstance(frame, dict) else None


@dataclass
class Failure:
    """Why a connection ended: enough to log it, pick a delay, or raise."""

    reason: str
    code: int | None = None
    status: int | None = None

    @property
    def slow(self) -> bool:
        return self.code in SLOW_CLOSE_CODES or self.status is not None


def failure_of(exc: BaseException) -> Failure:
    """A connection attempt or a live connection that failed with ``exc``."""
    if isinstance(exc, websockets.InvalidStatus):
        status = exc.response.status_code
        return Failure(f"server answered {status}", status=status)
    if isinstance(exc, websockets.ConnectionClosed):
        code = exc.rcvd.code if exc.rcvd is not None else 1006
        reason = exc.rcvd.reason if exc.rcvd is not None else ""
        return Failure(f"close {code}" + (f" ({reason})" if reason else ""), code=code)
    return Failure(exc.__class__.__name__)


def closed_failure(socket: ClientConnection) -> Failure:
    code = socket.close_code if socket.close_code is not None else 1006
    reason = socket.close_reason or ""
    return Failure(f"close {code}" + (f" ({reason})" if reason else ""), code=code)


def raise_if_fatal(failure: Failure, error: dict[str, Any] | None) -> None:
    """Raise the typed error of a close code that means stop (4403, 4429, 4400)."""
    if failure.code in FATAL_CLOSE_CODES:
        raise FATAL_CLOSE_CODES[failure.code](failure.code, failure.reason, error)


# Exceptions of a connection that may come back: anything else propagates.
RETRYABLE = (OSError, TimeoutError, websockets.WebSocketException)

__all__ = [
    "RETRYABLE",
    "ClientConnection",
    "Credentials",
    "Endpoint",
    "Failure",
    "Retry",
    "closed_failure",
    "decode",
    "failure_of",
    "open_socket",
    "raise_if_fatal",
]
