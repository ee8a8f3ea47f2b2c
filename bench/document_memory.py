"""Server memory of hostile document uploads and exports, against the real server.

Run from the repository root: ``python bench/document_memory.py [--project DIR]``.
Starts ``python -m streamsite.server`` of the checkout in ``--project`` (this
one by default; point it at an older checkout to compare) on a throwaway
SQLite database, then, as an anonymous holder of a steering share link:

- uploads the amplifying file (a 1,000-column header, then 30,000 one-cell
  rows: 64 KB) as one WebSocket binary frame;
- uploads the pathological 8.7 MB file of ``"a"b`` rows the same way;
- runs six concurrent exports of a 9.9 MB document.

For each: Daphne's RSS before, its peak (sampled every 10 ms) and after, the
time taken, the database's size, and the page frame a viewer received.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import websockets
from websockets.typing import Origin

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.targets import StreamsiteTarget  # noqa: E402

MB = 1024 * 1024


def big_tsv(rows: int) -> bytes:
    """About 100 bytes a row, as tests/documents/conftest.py's ``big_tsv``."""
    rng = random.Random(1)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 "
    lines = ["id\t" + "\t".join(f"column {n}" for n in range(1, 10))]
    for i in range(1, rows + 1):
        cells = ("".join(rng.choices(alphabet, k=9)) for _ in range(9))
        lines.append(f"{i}\t" + "\t".join(cells))
    return ("\n".join(lines) + "\n").encode()


def amplifying() -> bytes:
    header = "\t".join(f"c{n}" for n in range(1, 1001))
    return (header + "\n" + "x\n" * 30_000).encode()


def pathological() -> bytes:
    return b"h\n" + b'"a"b\n' * 1_740_000


class Peak:
    """The highest RSS of a process while the block runs, sampled every 10 ms."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> Peak:
        self.before = self.process.memory_info().rss
        self.peak = self.before
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.01)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        time.sleep(1)
        self.after = self.process.memory_info().rss

    def line(self, what: str, seconds: float, extra: str = "") -> str:
        return (
            f"{what:38} RSS {self.before / MB:6.0f} -> peak {self.peak / MB:6.0f} MB"
            f" (+{(self.peak - self.before) / MB:5.0f}), after {self.after / MB:6.0f} MB;"
            f" {seconds:6.2f} s{extra}"
        )


async def upload(url: str, origin: str, data: bytes) -> tuple[dict, int]:
    """Send ``data`` as a new version; the answer and the size of the page frame that followed."""
    async with websockets.connect(
        url, origin=Origin(origin), max_size=None, open_timeout=30, ping_interval=None
    ) as socket:
        await socket.recv()  # the current page
        await socket.send(data)
        frame_size = 0
        while True:
            text = await asyncio.wait_for(socket.recv(), timeout=300)
            frame = json.loads(text)
            if frame["type"] == "page":
                frame_size = len(text)
            if frame["type"] in ("uploaded", "error"):
                return frame, frame_size


def export(url: str) -> int:
    # As behind the deploy recipe's proxy: else SECURE_SSL_REDIRECT sends us to https.
    request = urllib.request.Request(url, headers={"X-Forwarded-Proto": "https"})
    with urllib.request.urlopen(request, timeout=300) as response:
        size = 0
        while block := response.read(64 * 1024):
            size += len(block)
        return size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=ROOT)
    parser.add_argument("--only", choices=["uploads", "exports"], help="one half only")
    args = parser.parse_args()
    target = StreamsiteTarget(project=args.project.resolve())
    target.setup()
    database = Path(target.env["DATABASE_URL"].removeprefix("sqlite:///"))
    with tempfile.TemporaryDirectory() as scratch:
        seed = Path(scratch) / "seed.tsv"
        seed.write_bytes(b"a\n1\n")
        big = Path(scratch) / "big.tsv"
        big.write_bytes(big_tsv(99_000))
        target.start_server()
        try:
            assert target.server is not None  # started above
            (pid,) = target.server.pids()[:1]
            document = target.create_document(seed)
            origin = f"http://127.0.0.1:{target.port}"
            print(f"project {args.project}")
            uploads = (("amplifying 64 KB", amplifying()), ('8.7 MB "a"b', pathological()))
            for name, data in uploads if args.only != "exports" else ():
                with Peak(pid) as peak:
                    start = time.perf_counter()
                    answer, frame_size = asyncio.run(upload(document.steer_url, origin, data))
                    seconds = time.perf_counter() - start
                extra = (
                    f"; {len(data) / 1024:,.0f} KB sent, answer {answer['type']}"
                    f" ({answer.get('row_count', answer.get('error'))}),"
                    f" page frame {frame_size / 1024:,.0f} KB,"
                    f" database {sum(p.stat().st_size for p in database.parent.glob(database.name + '*')) / MB:,.0f} MB"
                )
                print(peak.line(f"upload {name}", seconds, extra), flush=True)
            if args.only == "uploads":
                return
            exported = target.create_document(big)
            url = exported.viewer_url.replace("ws://", "http://").replace(
                "/ws/documents/", "/documents/"
            )
            url = url.replace("/?key=", "/export.tsv?key=")
            with Peak(pid) as peak:
                start = time.perf_counter()
                results: list[int] = []
                threads = [
                    threading.Thread(target=lambda: results.append(export(url))) for _ in range(6)
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                seconds = time.perf_counter() - start
            extra = f"; {len(big.read_bytes()) / MB:.1f} MB document, {len(results)} x {results[0] / MB:.1f} MB"
            print(peak.line("6 concurrent exports", seconds, extra), flush=True)
        finally:
            target.teardown()


if __name__ == "__main__":
    main()
