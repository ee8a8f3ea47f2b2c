"""Tornado reference broadcaster: the baseline Streamsite's fan-out is measured against.

One process, one thread, everything in memory, as in the classic "streaming data
with Tornado and WebSockets" write-ups: a set of viewers per feed UUID, each sample
serialized once and the same bytes written to every viewer. It speaks the subset
of docs/PROTOCOL.md that the benchmark drives:

- ``/ws/feeds/<uuid>/`` viewer: ``hello`` on open, then one ``sample`` per sample.
- ``/ws/feeds/<uuid>/publish/`` producer: ``{"value"}``, ``{"value", "ts"}`` or
  ``{"values": [...]}``; answered with ``{"type": "ack", "seq": n}``.
- ``/ws/documents/<uuid>/`` viewer: a ``page`` frame on open; a client
  ``{"type": "page", "page_no": n}`` moves every viewer of that document.

Deliberate differences from Streamsite (the reference's "unfair" advantages, which
the benchmark targets allow for): no authorisation (``?key=``/``?token=`` are
accepted and ignored), no persistence (an ack means "broadcast", not "durable"),
no ``presence`` frames, no ``?since=`` resume, unbounded per-viewer write buffers.
Feeds and documents are created on first use of a UUID; every feed is binary.

Run: ``python bench/reference.py --port 8765``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import resource
import signal
import time
from collections.abc import Sequence
from typing import Any

import tornado.web
import tornado.websocket

UUID_RE = r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
PAGE_SIZE = 100
DOCUMENT_COLUMNS = ["id", "name", "value", "category", "ts"]


def raise_nofile_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; return the new soft limit.

    Thousands of sockets need thousands of descriptors and the usual soft limit is 1024.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass  # keep the soft limit we have; the caller sees failures as errors
    return soft


def synthetic_rows(rows: int, columns: int = len(DOCUMENT_COLUMNS)) -> list[list[str]]:
    """Return a deterministic ``rows`` x ``columns`` table of strings (what a TSV holds).

    The benchmark runner writes the same table to a TSV file for Streamsite, so both
    targets serve pages of the same size.
    """
    categories = ["alpha", "beta", "gamma", "delta", "epsilon"]
    table = []
    for i in range(rows):
        row = [
            str(i + 1),
            f"item-{i + 1:05d}",
            f"{(i * 7919) % 100000 / 100:.2f}",
            categories[i % len(categories)],
            f"2025-01-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00Z",
        ]
        table.append(row[:columns])
    return table


def encode(frame: dict[str, Any]) -> bytes:
    """Serialize one frame. Bytes, so Tornado writes them as-is instead of re-encoding."""
    return json.dumps(frame, separators=(",", ":")).encode()


def error_frame(code: str, message: str) -> bytes:
    return encode({"type": "error", "error": code, "message": message})


class BinaryFeed:
    """In-memory binary feed: sequence counter, Beta(2, 2)-prior statistics, viewers."""

    def __init__(self, uuid: str) -> None:
        self.uuid = uuid
        self.seq = 0
        self.successes = 0
        self.failures = 0
        self.viewers: set[FeedViewerHandler] = set()

    def stats(self) -> dict[str, Any]:
        """Running statistics after the last sample, as in PROTOCOL.md for binary feeds.

        ``ci95`` is the normal approximation to the Beta posterior's 95 % interval: cheap,
        and keeps the frame the same shape and size as Streamsite's.
        """
        alpha = 2 + self.successes
        beta = 2 + self.failures
        total = alpha + beta
        mean = alpha / total
        half = 1.96 * math.sqrt(alpha * beta / (total * total * (total + 1)))
        return {
            "n": self.successes + self.failures,
            "successes": self.successes,
            "failures": self.failures,
            "alpha": alpha,
            "beta": beta,
            "mean": mean,
            "ci95": [max(0.0, mean - half), min(1.0, mean + half)],
        }

    def hello(self) -> bytes:
        return encode(
            {
                "type": "hello",
                "feed": {"uuid": self.uuid, "name": "ref", "kind": "binary"},
                "last_seq": self.seq,
                "stats": self.stats(),
            }
        )

    def append(self, value: int, ts: float) -> int:
        """Record one sample, send it to every viewer, return its seq."""
        self.seq += 1
        if value:
            self.successes += 1
        else:
            self.failures += 1
        frame = encode(
            {"type": "sample", "seq": self.seq, "value": value, "ts": ts, "stats": self.stats()}
        )
        # Copy: a write to a dead socket closes it, and on_close mutates the set.
        for viewer in list(self.viewers):
            viewer.send(frame)
        return self.seq


class Document:
    """In-memory document: a synthetic table, the shared page number, its viewers."""

    def __init__(self, uuid: str, rows: list[list[str]]) -> None:
        self.uuid = uuid
        self.rows = rows
        self.total_pages = max(1, math.ceil(len(rows) / PAGE_SIZE))
        self.viewers: set[DocumentViewerHandler] = set()
        self.page_frame = self._build_page(1)

    def _build_page(self, page_no: int) -> bytes:
        start = (page_no - 1) * PAGE_SIZE
        return encode(
            {
                "type": "page",
                "page_no": page_no,
                "page_size": PAGE_SIZE,
                "total_number": len(self.rows),
                "total_pages": self.total_pages,
                "columns": DOCUMENT_COLUMNS,
                "data": self.rows[start : start + PAGE_SIZE],
                "version": 1,
            }
        )

    def move_to(self, page_no: int) -> None:
        """Make ``page_no`` the shared page; the frame is built once and sent to all."""
        self.page_frame = self._build_page(page_no)
        for viewer in list(self.viewers):
            viewer.send(self.page_frame)


class State:
    """Everything the server knows; feeds and documents appear on first use."""

    def __init__(self, document_rows: int) -> None:
        self.feeds: dict[str, BinaryFeed] = {}
        self.documents: dict[str, Document] = {}
        # One table shared by every document: documents only differ by their page state.
        self.rows = synthetic_rows(document_rows)

    def feed(self, uuid: str) -> BinaryFeed:
        feed = self.feeds.get(uuid)
        if feed is None:
            feed = self.feeds[uuid] = BinaryFeed(uuid)
        return feed

    def document(self, uuid: str) -> Document:
        document = self.documents.get(uuid)
        if document is None:
            document = self.documents[uuid] = Document(uuid, self.rows)
        return document


class BaseHandler(tornado.websocket.WebSocketHandler):
    def initialize(self, state: State) -> None:
        self.state = state

    def check_origin(self, origin: str) -> bool:
        # No cookies, no ambient authority: any origin may connect (PROTOCOL.md allows
        # key/token sockets to omit or vary Origin).
        return True

    def send(self, frame: bytes) -> None:
        """Queue ``frame`` as a text frame; a viewer that went away is simply skipped."""
        try:
            self.write_message(frame, binary=False)
        except tornado.websocket.WebSocketClosedError:
            pass

    def parse(self, message: str | bytes) -> dict[str, Any] | None:
        """Decode a client frame, answering ``bad_json``/``bad_frame`` when it is not an object."""
        try:
            frame = json.loads(message)
        except ValueError:
            self.send(error_frame("bad_json", "frame is not valid JSON"))
            return None
        if not isinstance(frame, dict):
            self.send(error_frame("bad_frame", "frame must be a JSON object"))
            return None
        return frame


class FeedViewerHandler(BaseHandler):
    def open(self, uuid: str) -> None:  # type: ignore[override]
        self.feed = self.state.feed(uuid)
        self.feed.viewers.add(self)
        self.send(self.feed.hello())

    def on_message(self, message: str | bytes) -> None:
        self.send(error_frame("forbidden", "viewers cannot send frames"))

    def on_close(self) -> None:
        feed = getattr(self, "feed", None)
        if feed is not None:
            feed.viewers.discard(self)


def _is_binary_value(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and value in (0, 1)


class PublishHandler(BaseHandler):
    def open(self, uuid: str) -> None:  # type: ignore[override]
        self.feed = self.state.feed(uuid)

    def on_message(self, message: str | bytes) -> None:
        frame = self.parse(message)
        if frame is None:
            return
        if "values" in frame:
            values = frame["values"]
            if not isinstance(values, list) or not values:
                self.send(error_frame("bad_frame", "values must be a non-empty list"))
                return
            ts = time.time()
        elif "value" in frame:
            values = [frame["value"]]
            ts = frame.get("ts", time.time())
            if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
                self.send(error_frame("bad_value", "ts must be a finite number"))
                return
        else:
            self.send(error_frame("bad_frame", "expected value or values"))
            return
        # Validate everything first: a bad frame publishes nothing.
        if not all(_is_binary_value(v) for v in values):
            self.send(error_frame("bad_value", "binary feeds take 0 or 1"))
            return
        seq = 0
        for value in values:
            seq = self.feed.append(int(value), ts)
        self.send(encode({"type": "ack", "seq": seq}))


class DocumentViewerHandler(BaseHandler):
    def open(self, uuid: str) -> None:  # type: ignore[override]
        self.document = self.state.document(uuid)
        self.document.viewers.add(self)
        self.send(self.document.page_frame)

    def on_message(self, message: str | bytes) -> None:
        frame = self.parse(message)
        if frame is None:
            return
        page_no = frame.get("page_no")
        if frame.get("type") != "page" or isinstance(page_no, bool) or not isinstance(page_no, int):
            self.send(error_frame("bad_frame", 'expected {"type": "page", "page_no": n}'))
            return
        if not 1 <= page_no <= self.document.total_pages:
            self.send(
                error_frame("out_of_range", f"page_no must be 1..{self.document.total_pages}")
            )
            return
        self.document.move_to(page_no)

    def on_close(self) -> None:
        document = getattr(self, "document", None)
        if document is not None:
            document.viewers.discard(self)


def make_app(state: State) -> tornado.web.Application:
    args = {"state": state}
    return tornado.web.Application(
        [
            (rf"/ws/feeds/{UUID_RE}/", FeedViewerHandler, args),
            (rf"/ws/feeds/{UUID_RE}/publish/", PublishHandler, args),
            (rf"/ws/documents/{UUID_RE}/", DocumentViewerHandler, args),
        ]
    )


async def serve(address: str, port: int, document_rows: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    app = make_app(State(document_rows))
    # A deep accept queue: the load generator opens connections in batches of hundreds.
    server = app.listen(port, address, backlog=4096)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"reference listening on {address}:{port}", flush=True)
    await stop.wait()
    server.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--document-rows", type=int, default=10_000)
    args = parser.parse_args(argv)
    raise_nofile_limit()
    asyncio.run(serve(args.address, args.port, args.document_rows))


if __name__ == "__main__":
    main()
