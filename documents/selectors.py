"""Reads of documents: pages, whole versions, lists."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

from django.conf import settings
from django.db.models import QuerySet

from documents import events
from documents.models import ROWS_PER_CHUNK, Document, DocumentChunk
from streamsite import frames

# A reader that raced a new version (its chunks were deleted between reading
# the document row and reading them) simply reads again; more than a few
# uploads in a row during one read is not a real-world case.
_READ_ATTEMPTS = 5
# Chunks an export fetches per round trip: 2,000 rows, some 200 kB of JSON for
# a typical file (never more than the whole document, for one of huge rows).
EXPORT_FETCH_CHUNKS = 20


class PageOutOfRange(ValueError):
    """A page number outside 1..total_pages."""


class VersionGone(RuntimeError):
    """The version being read was replaced (and its rows deleted) meanwhile."""


def page_size() -> int:
    return settings.DOCUMENT_PAGE_SIZE


def page_count(row_count: int, size: int) -> int:
    """Pages of ``size`` rows; a header-only document still has one (empty) page."""
    return max(1, -(-row_count // size))


def document_rows(document: Document, start: int, stop: int) -> list[list[str]]:
    """Rows ``start`` (0-based, inclusive) to ``stop`` (exclusive) of the document's version.

    One query over the chunk index. Raises VersionGone if the version's rows
    are no longer all there.
    """
    stop = min(stop, document.row_count)
    if start >= stop:
        return []
    first, last = start // ROWS_PER_CHUNK, (stop - 1) // ROWS_PER_CHUNK
    chunks = list(
        DocumentChunk.objects.filter(
            document_id=document.pk,
            version=document.version,
            chunk_no__gte=first,
            chunk_no__lte=last,
        )
        .order_by("chunk_no")
        .values_list("rows_json", flat=True)
    )
    if len(chunks) != last - first + 1:
        raise VersionGone(f"version {document.version} of {document.uuid} is gone")
    rows = [row for chunk in chunks for row in json.loads(chunk)]
    offset = first * ROWS_PER_CHUNK
    return rows[start - offset : stop - offset]


def document_page(document: Document, page_no: int) -> frames.PageFrame:
    """Page ``page_no`` (1-based) of the document as given (version, row count, state).

    Raises PageOutOfRange, or VersionGone when the instance is stale; callers
    holding the document's row lock never see the latter.
    """
    size = page_size()
    total_pages = page_count(document.row_count, size)
    if not 1 <= page_no <= total_pages:
        raise PageOutOfRange(f"page_no must be between 1 and {total_pages}")
    start = (page_no - 1) * size
    return events.page_frame(
        document,
        page_no=page_no,
        page_size=size,
        total_pages=total_pages,
        rows=document_rows(document, start, start + size),
    )


def document_current_page(document_id: int) -> frames.PageFrame:
    """The shared page as it is now, read fresh from the database.

    The document row and its chunks are two statements; if a new version
    committed in between, the old chunks may be gone, and we read again.
    """
    for _ in range(_READ_ATTEMPTS - 1):
        document = Document.objects.get(pk=document_id)
        try:
            return _shared_page(document)
        except VersionGone:
            continue
    return _shared_page(Document.objects.get(pk=document_id))


def document_page_now(document: Document) -> frames.PageFrame:
    """The shared page of a document row just read (e.g. by documents.access), else read again.

    Saves the page view a second read of the row; a new version committed since
    the row was read (its chunks gone) falls back to document_current_page.
    """
    try:
        return _shared_page(document)
    except VersionGone:
        return document_current_page(document.pk)


def _shared_page(document: Document) -> frames.PageFrame:
    # A smaller DOCUMENT_PAGE_SIZE than when the page was set can leave fewer pages.
    last = page_count(document.row_count, page_size())
    return document_page(document, min(document.current_page, last))


def document_export(document_id: int) -> tuple[Document, Iterator[list[str]]]:
    """The current version of the document and an iterator over all its rows, for a download.

    The rows come from one query over the version's chunks in order, fetched
    ``EXPORT_FETCH_CHUNKS`` at a time (``QuerySet.iterator``), so an export
    holds a few chunks whatever the document's size. That one query reads one
    snapshot: SQLite (in WAL mode) keeps the statement's read snapshot until
    the last row is fetched, and PostgreSQL's server-side cursor is declared
    ``WITH HOLD`` outside a transaction, which keeps its result as of the
    declaration. A new version uploaded meanwhile deletes the old chunks, but
    not from under the export: it finishes the version it started.

    A version replaced between reading the document and the first chunk is
    noticed before anything is returned, and read again. Raises VersionGone
    (while iterating) if the rows read do not add up to the version's, which
    the snapshot rules out.
    """
    for _ in range(_READ_ATTEMPTS):
        document = Document.objects.get(pk=document_id)
        chunks = (
            DocumentChunk.objects.filter(document_id=document.pk, version=document.version)
            .order_by("chunk_no")
            .values_list("chunk_no", "rows_json")
            .iterator(chunk_size=EXPORT_FETCH_CHUNKS)
        )
        first = next(chunks, None)
        # A version's chunks are written and deleted in one transaction each:
        # if its first chunk is in the snapshot, all of them are.
        if document.row_count == 0 or (first is not None and first[0] == 0):
            return document, _exported_rows(document, first, chunks)
        # QuerySet.iterator() is a generator (closing it closes the cursor); the stubs say Iterator.
        chunks.close()  # type: ignore[attr-defined]
    raise VersionGone(f"the document {document_id} changed {_READ_ATTEMPTS} times while read")


def _exported_rows(
    document: Document, first: tuple[int, str] | None, rest: Iterator[tuple[int, str]]
) -> Iterator[list[str]]:
    rows_read = 0
    for expected, (chunk_no, text) in enumerate(itertools.chain([first] if first else [], rest)):
        if chunk_no != expected:
            break
        rows = json.loads(text)
        rows_read += len(rows)
        yield from rows
    if rows_read != document.row_count:
        raise VersionGone(f"version {document.version} of {document.uuid} is gone")


def documents_for_user(user) -> QuerySet[Document]:
    """Documents of every tenant the user belongs to."""
    return Document.objects.filter(tenant__memberships__user_id=user.pk).select_related(
        "tenant", "uploaded_by"
    )
