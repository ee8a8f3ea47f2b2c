"""A feed's stored samples over HTTP: ``GET /api/feeds/<uuid>/samples/?format=json``."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

from streamsite_client._connection import Credentials, Endpoint
from streamsite_client.errors import AccessDenied, HTTPError
from streamsite_client.frames import Sample

if TYPE_CHECKING:
    import pandas

# Rows asked for per request when the caller wants everything.
PAGE_ROWS = 1000


def parse_rows(body: str) -> list[dict[str, Any]]:
    """The rows of an answer: a JSON array, an object holding one (``samples``,
    ``rows`` or ``results``), or one JSON object per line."""
    text = body.strip()
    if not text:
        return []
    try:
        parsed = json.loads(text)
    except ValueError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    if isinstance(parsed, list):
        return parsed
    if isinstance(parsed, dict):
        for name in ("samples", "rows", "results", "data"):
            if isinstance(parsed.get(name), list):
                rows: list[dict[str, Any]] = parsed[name]
                return rows
        if "seq" in parsed:
            return [parsed]
    raise ValueError("the answer holds no rows")


def fetch_page(
    endpoint: Endpoint,
    feed_uuid: str,
    credentials: Credentials,
    *,
    since: int | None,
    limit: int | None,
    timeout: float,
) -> list[Sample]:
    """One request (blocking): the samples after ``since``, at most ``limit``."""
    query = {"since": since, "limit": limit, "format": "json", "key": credentials.key}
    url = endpoint.http_url(f"/api/feeds/{feed_uuid}/samples/", query)
    headers = {"Accept": "application/json", **endpoint.headers(credentials)}
    request = urllib.request.Request(url, headers=headers, method="GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        text = exc.read().decode("utf-8", "replace")
        if exc.code in (403, 404):
            raise AccessDenied(url.split("?")[0], exc.code) from exc
        raise HTTPError(url.split("?")[0], exc.code, text) from exc
    rows = [
        Sample.from_frame(row)
        for row in parse_rows(body)
        if isinstance(row, dict) and row.get("type", "sample") == "sample"
    ]
    return sorted(rows, key=lambda s: s.seq)


def fetch_all(
    endpoint: Endpoint,
    feed_uuid: str,
    credentials: Credentials,
    *,
    since: int | None,
    limit: int | None,
    timeout: float,
) -> list[Sample]:
    """``limit`` samples after ``since`` (all of them when None), page by page."""
    rows: list[Sample] = []
    after = since
    while limit is None or len(rows) < limit:
        want = PAGE_ROWS if limit is None else min(PAGE_ROWS, limit - len(rows))
        page = fetch_page(
            endpoint, feed_uuid, credentials, since=after, limit=want, timeout=timeout
        )
        page = [s for s in page if after is None or s.seq > after]
        if not page:
            break
        rows.extend(page)
        after = page[-1].seq
    return rows


def to_dataframe(samples: list[Sample]) -> pandas.DataFrame:
    """Rows as a pandas DataFrame indexed by ``seq``: ``value``, ``ts``, ``time`` (UTC) and
    one column per scalar statistic (``stats_mean``, ``stats_alpha``...).

    Needs pandas (``pip install 'streamsite-client[pandas]'``).
    """
    try:
        import pandas
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("history_dataframe needs pandas: pip install pandas") from exc
    records = []
    for sample in samples:
        record: dict[str, Any] = {"seq": sample.seq, "value": sample.value, "ts": sample.ts}
        for name, value in sample.stats.items():
            if isinstance(value, int | float):
                record[f"stats_{name}"] = value
        records.append(record)
    frame = pandas.DataFrame.from_records(
        records, columns=None if records else ["seq", "value", "ts"]
    )
    frame["time"] = pandas.to_datetime(frame["ts"], unit="s", utc=True)
    return frame.set_index("seq")
