"""Every error the client raises derives from StreamsiteError."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamsite_client.frames import Resync


class StreamsiteError(Exception):
    """Base class of the client's errors."""


class AccessDenied(StreamsiteError):
    """The server refused the handshake (HTTP 403): no such object, another tenant's,
    or a missing, wrong or revoked key, token or session. The server does not say
    which; retrying will not help."""

    def __init__(self, url: str, status: int = 403) -> None:
        super().__init__(
            f"refused (HTTP {status}): no such object, or a wrong key, token or session"
        )
        self.url = url
        self.status = status


class Closed(StreamsiteError):
    """The server closed the connection with a code that means "stop" (see CLOSE_CODES).

    ``error`` is the error frame that came just before the close, if any.
    """

    code: int = 0

    def __init__(self, code: int, reason: str = "", error: dict[str, Any] | None = None) -> None:
        text = (error or {}).get("message") or reason or "closed by the server"
        super().__init__(f"closed {code}: {text}")
        self.code = code
        self.reason = reason
        self.error = error


class AccessRevoked(Closed):
    """4403: the key, token or membership the connection came in with was revoked."""


class TooManyConnections(Closed):
    """4429: the signed-in user holds MAX_CONNECTIONS_PER_USER sockets already."""


class BadRequest(Closed):
    """4400: a bad query parameter (``since``)."""


class GaveUp(StreamsiteError):
    """``Backoff.max_attempts`` connection attempts in a row failed."""

    def __init__(self, attempts: int, last_reason: str) -> None:
        super().__init__(f"gave up after {attempts} failed attempts (last: {last_reason})")
        self.attempts = attempts
        self.last_reason = last_reason


class ResyncError(StreamsiteError):
    """Samples were lost: the feed no longer keeps what this follower missed
    (a ``resync`` frame), or the stream had a gap that reconnecting could not fill.

    ``resync`` says which: samples ``resync.since + 1 .. resync.resume_seq`` were
    not delivered (those from ``resync.oldest_seq`` on may still be read with
    ``Client.history``). Follow again with ``since=resync.resume_seq`` to go on.
    """

    def __init__(self, resync: Resync) -> None:
        super().__init__(
            f"resync ({resync.reason}): samples {resync.since + 1}..{resync.resume_seq} "
            "were not delivered"
        )
        self.resync = resync


class PublishError(StreamsiteError):
    """The server refused one published sample (``code``: bad_value, bad_frame,
    quota_exceeded, rate_limited, too_large, ...); nothing of it was stored."""

    def __init__(self, code: str, message: str, *, id: str, value: float) -> None:
        super().__init__(f"{code}: {message} (id {id}, value {value!r})")
        self.code = code
        self.message = message
        self.id = id
        self.value = value


class PublishFailed(StreamsiteError):
    """``Publisher.flush`` or ``close``: some samples since the last flush were refused."""

    def __init__(self, errors: list[PublishError]) -> None:
        super().__init__(f"{len(errors)} sample(s) refused; first: {errors[0]}")
        self.errors = errors


class PublisherClosed(StreamsiteError):
    """The publisher was closed (or aborted) before this sample was acknowledged."""


class DocumentError(StreamsiteError):
    """The server refused a page turn or an upload (``code``: out_of_range, forbidden,
    too_large, invalid_tsv, bad_frame, rate_limited, ...). For invalid_tsv, ``reason``
    and ``line`` say what and where."""

    def __init__(self, frame: dict[str, Any]) -> None:
        super().__init__(f"{frame.get('error')}: {frame.get('message', '')}")
        self.code: str = str(frame.get("error"))
        self.message: str = str(frame.get("message", ""))
        self.reason: str | None = frame.get("reason")
        self.line: int | None = frame.get("line")
        self.frame = frame


class ConnectionLost(StreamsiteError):
    """The connection dropped before the server answered this request; it may or
    may not have been carried out."""


class HTTPError(StreamsiteError):
    """An HTTP request was answered with an error status."""

    def __init__(self, url: str, status: int, body: str) -> None:
        super().__init__(f"HTTP {status} from {url}: {body[:200]}")
        self.url = url
        self.status = status
        self.body = body


# What to do on each close code (docs/PROTOCOL.md "Close codes"):
# a class here means raise it and stop; SLOW codes back off longer; any other reconnects.
FATAL_CLOSE_CODES: dict[int, type[Closed]] = {
    4403: AccessRevoked,
    4429: TooManyConnections,
    4400: BadRequest,
}
SLOW_CLOSE_CODES = frozenset({1011, 1013})
