"""A feed's stored samples as a download: the query parameters and the encodings.

No Django imports. ``GET /api/feeds/<uuid>/samples/`` (streams.views) parses its
query with ``parse_history_query`` and encodes rows, read in seq order in
bounded pages, as CSV lines (``csv_header``, ``csv_row``) or as the viewer
socket's ``sample`` frames in a JSON array.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

HISTORY_DEFAULT_LIMIT = 10_000
HISTORY_MAX_LIMIT = 100_000
FORMATS = ("json", "csv")

# The statistics after each sample, as CSV columns, by feed kind (docs/PROTOCOL.md).
STATS_COLUMNS = {
    "binary": ("n", "successes", "failures", "alpha", "beta", "mean", "ci95_lo", "ci95_hi"),
    "numeric": ("n", "mean", "variance", "min", "max"),
}


class BadHistoryQuery(ValueError):
    """A query parameter the history endpoint cannot use; ``param`` names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


@dataclass(frozen=True)
class HistoryQuery:
    since: int  # samples with seq > since
    limit: int
    format: str


def _whole_number(raw: str, param: str, *, minimum: int, maximum: int) -> int:
    # ASCII digits only and at most 19 of them, as streams.viewer.parse_since.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19):
        raise BadHistoryQuery(param, f"{param} must be a whole number")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise BadHistoryQuery(param, f"{param} must be between {minimum} and {maximum:,}")
    return value


def parse_history_query(params: Mapping[str, str]) -> HistoryQuery:
    """``since`` (default 0), ``limit`` (default 10,000, at most 100,000), ``format``."""
    since = params.get("since", "")
    limit = params.get("limit", "")
    fmt = params.get("format", "") or "json"
    if fmt not in FORMATS:
        raise BadHistoryQuery("format", "format must be csv or json")
    return HistoryQuery(
        since=_whole_number(since, "since", minimum=0, maximum=2**63 - 1) if since else 0,
        limit=(
            _whole_number(limit, "limit", minimum=1, maximum=HISTORY_MAX_LIMIT)
            if limit
            else HISTORY_DEFAULT_LIMIT
        ),
        format=fmt,
    )


def _cell(value: Any) -> str:
    # json.dumps writes the shortest text that reads back as the same float.
    return "" if value is None else json.dumps(value)


def csv_header(kind: str) -> str:
    return ",".join(("seq", "ts", "value", *STATS_COLUMNS[kind])) + "\n"


def csv_row(kind: str, seq: int, value: float, ts: float, stats_json: str) -> str:
    """One CSV line. Every cell is a number (or empty), so nothing needs quoting."""
    stats = json.loads(stats_json)
    if kind == "binary":
        low, high = stats.get("ci95") or (None, None)
        stats = {**stats, "ci95_lo": low, "ci95_hi": high}
    shown = int(value) if kind == "binary" else value
    cells = [seq, ts, shown, *(stats.get(column) for column in STATS_COLUMNS[kind])]
    return ",".join(_cell(cell) for cell in cells) + "\n"
