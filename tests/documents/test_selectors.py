"""documents.selectors: page math and reading pages out of chunks."""

import pytest

from documents import selectors, services
from documents.models import Document
from documents.selectors import PageOutOfRange, VersionGone, document_page, page_count
from tests.documents.conftest import numbers_tsv


@pytest.mark.parametrize(
    "rows,size,pages", [(0, 100, 1), (1, 100, 1), (100, 100, 1), (101, 100, 2), (250, 100, 3)]
)
def test_page_count(rows, size, pages):
    assert page_count(rows, size) == pages


def test_first_middle_and_last_page(acme_document):
    first, middle, last = (document_page(acme_document, n) for n in (1, 2, 3))
    assert [r[0] for r in first["data"]] == [str(i) for i in range(1, 101)]
    assert [r[0] for r in middle["data"]] == [str(i) for i in range(101, 201)]
    assert [r[0] for r in last["data"]] == [str(i) for i in range(201, 251)]
    assert {k: last[k] for k in ("page_no", "page_size", "total_number", "total_pages")} == {
        "page_no": 3,
        "page_size": 100,
        "total_number": 250,
        "total_pages": 3,
    }
    assert last["columns"] == ["n", "square", "tag"] and last["version"] == 1


@pytest.mark.parametrize("page_no", [0, 4])
def test_a_page_outside_the_document_is_refused(acme_document, page_no):
    with pytest.raises(PageOutOfRange):
        document_page(acme_document, page_no)


def test_a_header_only_document_has_one_empty_page(world):
    document = services.document_create(tenant=world.acme, name="e", data=b"a\tb\n").document
    page = document_page(document, 1)
    assert (page["total_pages"], page["total_number"], page["data"]) == (1, 0, [])
    assert page["columns"] == ["a", "b"]


@pytest.mark.parametrize("size", [7, 100, 130, 1000])
def test_pages_that_straddle_chunks_are_read_whole(acme_document, settings, size):
    settings.DOCUMENT_PAGE_SIZE = size
    seen = []
    for page_no in range(1, page_count(250, size) + 1):
        seen += [int(row[0]) for row in document_page(acme_document, page_no)["data"]]
    assert seen == list(range(1, 251))


def test_the_current_page_is_clamped_when_the_page_size_grew(acme_document, settings):
    services.document_page_set(document=acme_document, page_no=3)
    settings.DOCUMENT_PAGE_SIZE = 200
    page = selectors.document_current_page(acme_document.pk)
    assert (page["page_no"], page["total_pages"]) == (2, 2)


def test_a_stale_instance_notices_its_version_is_gone(acme_document):
    stale = Document.objects.get(pk=acme_document.pk)
    services.document_replace(document=acme_document, data=numbers_tsv(10), uploaded_by=None)
    with pytest.raises(VersionGone):
        document_page(stale, 1)
    # Reading fresh gets the new version.
    assert selectors.document_current_page(acme_document.pk)["version"] == 2


def test_export_reads_every_row_of_the_current_version(acme_document):
    document, rows = selectors.document_export(acme_document.pk)
    rows = list(rows)
    assert document.version == 1 and len(rows) == 250 and rows[-1] == ["250", "62500", "v1"]


def test_documents_for_user_lists_only_my_tenants(acme_document, globex_document, world):
    assert list(selectors.documents_for_user(world.bob)) == [acme_document]
    assert list(selectors.documents_for_user(world.charlie)) == [globex_document]
