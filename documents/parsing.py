"""Uploads are parsed in a worker process, not in the server's own.

Parsing a TSV file is pure Python and CPU-bound. In a Daphne process it held
the GIL against the event loop, so one tenant's uploads slowed every other
tenant's handshakes, page loads and publishes (the isolation matrix measured
page loads p95 8-11 s during an upload flood; tests/isolation/test_uploads.py).
In a worker process the operating system shares the cores instead, and the
server's loop keeps its own.

One small pool per server process (``DOCUMENT_PARSE_WORKERS`` workers, 0 to
parse in the calling thread): uploads beyond it wait their turn, which with
the per-tenant ``concurrent_uploads`` quota bounds what one tenant can make
the others wait. Workers are started with ``spawn`` (never ``fork`` from a
threaded server) and import only ``documents.tsv``, which has no Django in it.
A worker that dies (killed, out of memory) fails that upload with a clear
error and is replaced for the next one.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from django.conf import settings

from documents.tsv import PackedTSV, TSVLimits, json_pack, pack_tsv

log = logging.getLogger(__name__)

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None


class ParserUnavailable(RuntimeError):
    """The worker process died while parsing this upload; nothing was stored."""


def _executor() -> ProcessPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ProcessPoolExecutor(
                max_workers=settings.DOCUMENT_PARSE_WORKERS,
                mp_context=multiprocessing.get_context("spawn"),
            )
        return _pool


def _discard(broken: ProcessPoolExecutor) -> None:
    global _pool
    with _lock:
        if _pool is broken:
            _pool = None
    broken.shutdown(wait=False, cancel_futures=True)


def warm() -> None:
    """Start the workers now (the server calls this at start-up), so that the first
    upload does not wait for a process to start."""
    if settings.DOCUMENT_PARSE_WORKERS:
        for _ in range(settings.DOCUMENT_PARSE_WORKERS):
            _executor().submit(int)


def pack_upload(data: bytes, *, rows_per_pack: int, limits: TSVLimits) -> PackedTSV:
    """``pack_tsv(data)`` into JSON chunks, in a worker process; raises TSVError as it does."""
    if settings.DOCUMENT_PARSE_WORKERS == 0:
        return pack_tsv(data, pack=json_pack, rows_per_pack=rows_per_pack, limits=limits)
    pool = _executor()
    try:
        return pool.submit(
            pack_tsv, data, pack=json_pack, rows_per_pack=rows_per_pack, limits=limits
        ).result()
    except BrokenProcessPool as exc:
        log.warning("documents: a parser process died (%s); starting a new one", exc)
        _discard(pool)
        raise ParserUnavailable("the file could not be parsed just now; send it again") from exc
