"""Bounded cost of documents: what an upload, a page and an export cost follows the bytes sent.

A tenant (or anyone holding a steering share link) chooses the file; nothing
in it may make the server hold or send rows x columns. Memory is measured
with tracemalloc (Python allocations, deterministic enough for generous
bounds); speed lives in bench/tsv_parse.py, as ratios.
"""

from __future__ import annotations

import threading
import tracemalloc
from collections.abc import Callable
from typing import TypeVar

import pytest
from django.db import connections

from documents import selectors, services, tsv
from documents.models import DocumentChunk
from streamsite.frames import encode
from tests.documents.conftest import big_tsv, numbers_tsv

T = TypeVar("T")
KB = 1024
MB = 1024 * KB


def amplifying_tsv(rows: int = 30_000) -> bytes:
    """The reviewer's file: a 1,000-column header, then one-cell rows (64 KB for 30,000)."""
    header = "\t".join(f"c{n}" for n in range(1, 1001))
    return (header + "\n" + "x\n" * rows).encode()


def peak_of(action: Callable[[], T]) -> tuple[T, int]:
    """What ``action`` returns and the most memory it held at once (bytes, tracemalloc)."""
    tracemalloc.start()
    try:
        result = action()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def stored_bytes(document) -> int:
    return sum(
        len(text)
        for text in DocumentChunk.objects.filter(document=document).values_list(
            "rows_json", flat=True
        )
    )


# --- Uploads: stored size, page frame, memory ----------------------------------


def test_amplifying_upload_is_stored_and_framed_in_proportion_to_its_size(world):
    data = amplifying_tsv()

    upload = services.document_create(tenant=world.acme, name="wide", data=data)

    document = upload.document
    assert (document.row_count, len(document.columns)) == (30_000, 1000)
    # Before: every row padded to 1,000 cells, 90 MB of SQLite and 408 KB frames.
    assert stored_bytes(document) <= 4 * len(data) + 10 * KB
    header_bytes = len(encode(document.columns))
    for frame in (upload.frame, selectors.document_current_page(document.pk)):
        assert frame["data"][:2] == [["x"], ["x"]]
        assert len(encode(frame)) <= header_bytes + 2 * KB
        assert len(encode(frame)) <= 4 * len(data)


def test_amplifying_upload_holds_a_small_multiple_of_the_file(world):
    data = amplifying_tsv()

    _, peak = peak_of(lambda: services.document_create(tenant=world.acme, name="wide", data=data))

    # Before: hundreds of MB (30 million padded cells). The rows as chunk JSON,
    # the decoded text and one chunk of lists remain.
    assert peak <= 10 * len(data) + 2 * MB, f"{peak / MB:.1f} MB for a {len(data) / KB:.0f} KB file"


def test_replacing_with_many_short_rows_holds_the_packed_rows_not_lists(world, acme_document):
    data = b"h\n" + b'"a"b\n' * 200_000  # 1 MB; as lists of str this would be ~25 MB

    _, peak = peak_of(
        lambda: services.document_replace(document=acme_document, data=data, uploaded_by=None)
    )

    assert peak <= 8 * len(data) + 2 * MB, f"{peak / MB:.1f} MB for a {len(data) / MB:.1f} MB file"
    assert selectors.document_current_page(acme_document.pk)["data"][0] == ['"a"b']


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"h\n" + b'"a"b\n' * 100_000, id="quote-a-quote-b rows"),
        pytest.param(b"h\tk\n" + b'a\t"b\n' * 100_000 + b'x\t"y"\n', id="unmatched-looking"),
        pytest.param(b"h\n" + b"\t" * 999 + b"\n" + b"x\n" * 100_000, id="many tabs"),
        pytest.param(b"h\n" + b"\n".join([b"a"] * 200_000), id="many short lines"),
        pytest.param(b"h,k\n" + b'1,"b"\n' * 100_000, id="read as CSV"),
        pytest.param(b"h,k\n" + b",\n" * 200_000, id="CSV rows of empty cells"),
        pytest.param(b"h\tk\n" + b"\t\n" * 200_000, id="rows of tabs"),
    ],
)
def test_packing_a_pathological_file_holds_a_small_multiple_of_it(data):
    packed, peak = peak_of(lambda: tsv.pack_tsv(data, pack=tsv.json_pack, rows_per_pack=100))

    assert packed.row_count >= 100_000
    assert peak <= 8 * len(data) + 1 * MB, f"{peak / MB:.1f} MB for {len(data) / MB:.1f} MB"


# --- Exports: streamed, one version ------------------------------------------


def test_export_holds_a_few_chunks_not_the_document(world):
    data = big_tsv(30_000)  # 3 MB; as lists of str over 20 MB
    document = services.document_create(tenant=world.acme, name="big", data=data).document

    def export() -> int:
        document_read, rows = selectors.document_export(document.pk)
        return sum(len(line) for line in tsv.export_lines(document_read.columns, rows))

    size, peak = peak_of(export)

    assert size >= len(data)
    assert peak <= 2 * MB, f"{peak / MB:.1f} MB to export a {len(data) / MB:.1f} MB document"


def test_export_pads_ragged_rows_as_the_page_shows_them(world):
    data = b"a\tb\tc\n1\n2\t3\t4\n5\t6\t7\t8\n"
    document = services.document_create(tenant=world.acme, name="r", data=data).document

    document, rows = selectors.document_export(document.pk)

    assert "".join(tsv.export_lines(document.columns, rows)) == (
        "a\tb\tc\tcolumn_4\n1\t\t\t\n2\t3\t4\t\n5\t6\t7\t8\n"
    )


def test_old_padded_chunks_still_read_and_export_the_same(world):
    document = services.document_create(tenant=world.acme, name="old", data=b"a\tb\n1\n").document
    # What the padding parser stored: every row as wide as the header.
    DocumentChunk.objects.filter(document=document).update(rows_json='[["1",""]]')

    page = selectors.document_current_page(document.pk)
    document, rows = selectors.document_export(document.pk)

    assert page["data"] == [["1", ""]]
    assert "".join(tsv.export_lines(document.columns, rows)) == "a\tb\n1\t\n"


@pytest.mark.django_db(transaction=True)
def test_export_finishes_the_version_it_started_while_a_new_one_is_uploaded(world):
    rows = 5 * selectors.EXPORT_FETCH_CHUNKS * 100  # several fetches
    document = services.document_create(
        tenant=world.acme, name="n", data=numbers_tsv(rows, tag="v1")
    ).document
    exported, iterator = selectors.document_export(document.pk)
    first = [next(iterator) for _ in range(150)]

    def upload() -> None:
        try:
            services.document_replace(
                document=document, data=numbers_tsv(10, tag="v2"), uploaded_by=None
            )
        finally:
            connections.close_all()

    writer = threading.Thread(target=upload)
    writer.start()
    writer.join()
    rest = list(iterator)

    assert exported.version == 1
    assert [row[2] for row in first + rest] == ["v1"] * rows
    assert [int(row[0]) for row in first + rest] == list(range(1, rows + 1))
    assert selectors.document_current_page(document.pk)["version"] == 2
    assert not DocumentChunk.objects.filter(document=document, version=1).exists()
