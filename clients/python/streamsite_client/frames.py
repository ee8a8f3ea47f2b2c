"""What the client hands you: one small immutable class per kind of frame or event."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Sample:
    """One sample of a feed: ``seq`` counts from 1 with no gap; ``stats`` are the
    feed's running statistics after it (docs/PROTOCOL.md, "Viewer socket")."""

    seq: int
    value: float
    ts: float
    stats: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> Sample:
        return cls(
            seq=int(frame["seq"]),
            value=frame["value"],
            ts=float(frame["ts"]),
            stats=dict(frame.get("stats") or {}),
        )


@dataclass(frozen=True, slots=True)
class Hello:
    """The first frame of every connection: the feed and its state now."""

    feed_uuid: str
    name: str
    kind: str
    last_seq: int
    stats: dict[str, Any]
    watching: int

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> Hello:
        feed = frame.get("feed") or {}
        return cls(
            feed_uuid=str(feed.get("uuid", "")),
            name=str(feed.get("name", "")),
            kind=str(feed.get("kind", "")),
            last_seq=int(frame["last_seq"]),
            stats=dict(frame.get("stats") or {}),
            watching=int(frame.get("watching") or 0),
        )


@dataclass(frozen=True, slots=True)
class Resync:
    """Samples ``since + 1 .. resume_seq`` were not delivered and never will be on
    this stream; it goes on after ``resume_seq``. ``oldest_seq`` is the oldest
    sample the feed still keeps (None when unknown): ``Client.history`` can read
    the missed ones from there."""

    reason: str
    since: int
    resume_seq: int
    oldest_seq: int | None


@dataclass(frozen=True, slots=True)
class Presence:
    watching: int


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection dropped or could not open; the client retries in ``retry_in`` s.

    ``code`` is the close code (None if there was no WebSocket close), ``status``
    the HTTP status of a refused handshake (None otherwise).
    """

    reason: str
    retry_in: float
    code: int | None = None
    status: int | None = None


FeedEvent = Hello | Sample | Resync | Presence | Disconnected


@dataclass(frozen=True, slots=True)
class Ack:
    """A published sample is durable as ``seq``. ``duplicate`` is true when the
    server already had a sample with this ``id`` (exactly-once publishing): it was
    not stored again and ``seq`` is the original's."""

    seq: int
    id: str
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class Page:
    """The shared page of a document (docs/PROTOCOL.md, "Documents")."""

    page_no: int
    page_size: int
    total_number: int
    total_pages: int
    columns: list[str]
    data: list[list[str]]
    version: int
    state: int

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> Page:
        return cls(
            page_no=int(frame["page_no"]),
            page_size=int(frame.get("page_size") or 0),
            total_number=int(frame.get("total_number") or 0),
            total_pages=int(frame.get("total_pages") or 1),
            columns=list(frame.get("columns") or []),
            data=[list(row) for row in frame.get("data") or []],
            version=int(frame.get("version") or 0),
            state=int(frame.get("state") or 0),
        )


@dataclass(frozen=True, slots=True)
class Uploaded:
    """An upload became version ``version`` with ``row_count`` rows."""

    version: int
    row_count: int
    warnings: list[str]

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> Uploaded:
        return cls(
            version=int(frame["version"]),
            row_count=int(frame.get("row_count") or 0),
            warnings=list(frame.get("warnings") or []),
        )
