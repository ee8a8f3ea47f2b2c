"""The wire protocol as code: every frame Streamsite sends, every close code, one encoding.

docs/PROTOCOL.md is the catalogue ("Frame catalogue", "Close codes");
tests/streamsite/test_frames.py checks it against this module both ways, so a
frame or code added here and not there (or there and not here) fails the suite.

Each server-to-client frame is a TypedDict named after its ``type``, built by
the function of the same name below (or, on the ingest hot path, by
``sample_text``), and turned into text by ``encode`` only: no other module
serialises a frame. The same objects are the JSON bodies of the HTTP API
(``ack``, ``error``, ``uploaded``), so a client parses one shape wherever it
meets one. ``check`` validates a decoded frame against its type (tests use it
on what the real server sent).
"""

# No "from __future__ import annotations": TypedDict needs NotRequired evaluated to
# tell optional fields from required ones (__optional_keys__, used by check()).
import json
import math
from collections.abc import Mapping
from enum import IntEnum, StrEnum
from typing import Any, Literal, NotRequired, TypedDict, get_args, get_type_hints


class Close(IntEnum):
    """Every close code the server gives a WebSocket (PROTOCOL.md, "Close codes")."""

    INVALID_UTF8 = 1007  # sent by autobahn for a text frame that is not UTF-8
    POLICY = 1008  # too many frames, after rate_limited errors
    TOO_BIG = 1009  # a frame over its socket's limit, or a message over the server's
    UNAVAILABLE = 1011  # live events unavailable, or a server error
    TRY_AGAIN_LATER = 1013  # a publisher too far ahead of its acks
    TOO_SLOW = 4008  # the client read too slowly (streamsite.server)
    BAD_QUERY = 4400  # a bad query parameter (since)
    ACCESS_REVOKED = 4403  # the credential the connection came in with went (streamsite.control)
    TOO_MANY_CONNECTIONS = 4429  # a connection cap reached (streamsite.slots)


class ErrorCode(StrEnum):
    """Every ``error`` of an error frame or HTTP error body (PROTOCOL.md, "Error codes")."""

    BAD_JSON = "bad_json"
    BAD_FRAME = "bad_frame"
    BAD_VALUE = "bad_value"
    BAD_PARAM = "bad_param"
    BAD_REQUEST = "bad_request"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    OUT_OF_RANGE = "out_of_range"
    TOO_LARGE = "too_large"
    INVALID_TSV = "invalid_tsv"
    UNAVAILABLE = "unavailable"
    RATE_LIMITED = "rate_limited"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    QUOTA_EXCEEDED = "quota_exceeded"
    TOO_SLOW = "too_slow"
    REVOKED = "revoked"


class FeedInfo(TypedDict):
    uuid: str
    name: str
    kind: str


class HelloFrame(TypedDict):
    type: Literal["hello"]
    feed: FeedInfo
    last_seq: int
    stats: dict[str, Any]
    watching: int


class SampleFrame(TypedDict):
    type: Literal["sample"]
    seq: int
    value: float | int
    ts: float
    stats: dict[str, Any]


class ResyncFrame(TypedDict):
    type: Literal["resync"]
    reason: str
    since: int
    oldest_seq: int | None


class PresenceFrame(TypedDict):
    type: Literal["presence"]
    watching: int


class AckFrame(TypedDict):
    type: Literal["ack"]
    seq: int
    # Exactly-once publishing (PROTOCOL.md): only when some of the frame's values
    # carried ids stored before. True: all of them were; nothing was stored twice.
    duplicate: NotRequired[bool]
    # A ``values`` frame with duplicates: each value's seq, in frame order, and
    # the indexes of the values that were duplicates.
    seqs: NotRequired[list[int]]
    duplicates: NotRequired[list[int]]


class PageFrame(TypedDict):
    type: Literal["page"]
    page_no: int
    page_size: int
    total_number: int
    total_pages: int
    columns: list[str]
    data: list[list[str]]
    version: int
    state: int


class UploadedFrame(TypedDict):
    type: Literal["uploaded"]
    version: int
    row_count: int
    warnings: list[str]
    # The HTTP upload answer adds where the document lives.
    uuid: NotRequired[str]
    url: NotRequired[str]


class ErrorFrame(TypedDict):
    type: Literal["error"]
    error: str  # an ErrorCode
    message: str
    limit: NotRequired[str]  # quota_exceeded, too_many_connections, too_large (HTTP 413)
    reason: NotRequired[str]  # invalid_tsv
    line: NotRequired[int | None]  # invalid_tsv
    param: NotRequired[str]  # bad_param


Frame = (
    HelloFrame
    | SampleFrame
    | ResyncFrame
    | PresenceFrame
    | AckFrame
    | PageFrame
    | UploadedFrame
    | ErrorFrame
)

# Every frame type by its ``type``: the catalogue the docs test compares with PROTOCOL.md.
FRAMES: dict[str, Any] = {
    get_args(get_type_hints(cls)["type"])[0]: cls
    for cls in (
        HelloFrame,
        SampleFrame,
        ResyncFrame,
        PresenceFrame,
        AckFrame,
        PageFrame,
        UploadedFrame,
        ErrorFrame,
    )
}


# One encoder for every frame: json.dumps with arguments builds a new JSONEncoder
# per call, a fifth of the cost of encoding an ack.
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def encode(frame: Mapping[str, Any]) -> str:
    """The one JSON encoding of a frame: compact, and never NaN or Infinity."""
    return _ENCODER.encode(frame)


def json_number(value: float | int | None) -> str:
    """JSON text of a number (or None), exactly as ``encode`` writes it, without a
    dict or an encoder pass: ValueError, as ``encode``, for NaN or an infinity."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"Out of range float values are not JSON compliant: {value!r}")
        return float.__repr__(value)
    if type(value) is int:
        return int.__repr__(value)
    return _ENCODER.encode(value)


# -- builders ----------------------------------------------------------------


def hello(*, feed: FeedInfo, last_seq: int, stats: dict[str, Any], watching: int) -> HelloFrame:
    return HelloFrame(type="hello", feed=feed, last_seq=last_seq, stats=stats, watching=watching)


def sample_text(*, seq: int, value: float | int, ts: float, stats_json: str) -> str:
    """The encoded ``sample`` frame around the stats text stored with the sample.

    The hot path of ingest: no dict, no second encoding of the statistics. It
    reads back as a SampleFrame (tests/streamsite/test_frames.py).
    """
    return (
        f'{{"type":"sample","seq":{seq},"value":{json_number(value)},'
        f'"ts":{json_number(ts)},"stats":{stats_json}}}'
    )


def resync(*, reason: str, since: int, oldest_seq: int | None) -> ResyncFrame:
    return ResyncFrame(type="resync", reason=reason, since=since, oldest_seq=oldest_seq)


def presence(watching: int) -> PresenceFrame:
    return PresenceFrame(type="presence", watching=watching)


def ack(
    seq: int,
    *,
    duplicate: bool | None = None,
    seqs: list[int] | None = None,
    duplicates: list[int] | None = None,
) -> AckFrame:
    """An ack; ``duplicate``, ``seqs`` and ``duplicates`` only when given (not None)."""
    frame = AckFrame(type="ack", seq=seq)
    if duplicate is not None:
        frame["duplicate"] = duplicate
    if seqs is not None:
        frame["seqs"] = seqs
    if duplicates is not None:
        frame["duplicates"] = duplicates
    return frame


def page(
    *,
    page_no: int,
    page_size: int,
    total_number: int,
    total_pages: int,
    columns: list[str],
    data: list[list[str]],
    version: int,
    state: int,
) -> PageFrame:
    return PageFrame(
        type="page",
        page_no=page_no,
        page_size=page_size,
        total_number=total_number,
        total_pages=total_pages,
        columns=columns,
        data=data,
        version=version,
        state=state,
    )


def uploaded(*, version: int, row_count: int, warnings: list[str]) -> UploadedFrame:
    return UploadedFrame(type="uploaded", version=version, row_count=row_count, warnings=warnings)


def error(
    code: ErrorCode | str,
    message: str,
    *,
    limit: str | None = None,
    reason: str | None = None,
    line: int | None = None,
    param: str | None = None,
) -> ErrorFrame:
    """An error frame; ``limit``, ``reason``/``line`` and ``param`` only for the codes that carry them.

    ``code`` must be an ErrorCode (or its value): an unknown one is a bug, ValueError.
    """
    frame = ErrorFrame(type="error", error=ErrorCode(code).value, message=message)
    if limit is not None:
        frame["limit"] = limit
    if code == ErrorCode.INVALID_TSV:
        frame["reason"] = reason or ""
        frame["line"] = line
    if param is not None:
        frame["param"] = param
    return frame


def error_frame(code: ErrorCode | str, message: str, **extra: Any) -> str:
    """``error(...)``, encoded: what a consumer sends."""
    return encode(error(code, message, **extra))


# -- checking ------------------------------------------------------------------


def fields(frame_type: str) -> tuple[frozenset[str], frozenset[str]]:
    """The (required, optional) fields of a frame type."""
    cls = FRAMES[frame_type]
    return frozenset(cls.__required_keys__), frozenset(cls.__optional_keys__)


def check(frame: Any) -> dict[str, Any]:
    """``frame`` if it is a frame this module defines, with exactly its fields; else ValueError."""
    if not isinstance(frame, dict) or frame.get("type") not in FRAMES:
        raise ValueError(f"not a known frame: {frame!r}")
    required, optional = fields(frame["type"])
    missing = required - frame.keys()
    extra = frame.keys() - required - optional
    if missing or extra:
        raise ValueError(
            f"{frame['type']} frame: missing {sorted(missing)}, unexpected {sorted(extra)}"
        )
    if frame["type"] == "error" and frame["error"] not in ErrorCode.__members__.values():
        raise ValueError(f"unknown error code {frame['error']!r}")
    return frame


def websocket_frame(text: str) -> bytes:
    """The complete wire form of a server-to-client text frame (RFC 6455, unmasked, FIN).

    It is the same bytes for every uncompressed connection, so a broadcast builds it
    once per process and writes it to each socket as is (see streamsite/server.py).
    """
    payload = text.encode()
    length = len(payload)
    if length < 126:
        header = bytes((0x81, length))
    elif length < 65536:
        header = bytes((0x81, 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + length.to_bytes(8, "big")
    return header + payload
