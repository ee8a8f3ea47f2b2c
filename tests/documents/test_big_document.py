"""Done-when 2: a 10 MB file of about 100,000 rows imports, and any page of it opens.

Correctness only; timings are measured by bench/documents.py.
"""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client

from documents.models import Document, DocumentChunk
from documents.selectors import document_page
from documents.services import document_page_set
from tests.documents.conftest import big_tsv

ROWS = 100_000  # big_tsv's default


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "big.tsv"
    path.write_bytes(big_tsv())
    return path


def test_a_10_mb_100k_row_file_imports_and_any_page_reads_correctly(world, big_file, settings):
    size = big_file.stat().st_size
    assert 9_500_000 < size <= settings.DOCUMENT_MAX_BYTES
    out = StringIO()
    call_command("importtsv", str(big_file), "--tenant", "acme", "--json", stdout=out)
    document = Document.objects.get(uuid=json.loads(out.getvalue())["uuid"])
    assert document.row_count == ROWS and len(document.columns) == 10
    assert DocumentChunk.objects.filter(document=document).count() == ROWS // 100

    for page_no, first_id in [(1, 1), (500, 49_901), (1000, 99_901)]:
        page = document_page(document, page_no)
        assert page["total_pages"] == 1000
        assert [int(row[0]) for row in page["data"]] == list(range(first_id, first_id + 100))

    # The HTTP page renders the shared page, here the middle one.
    document_page_set(document=document, page_no=500)
    client = Client()
    client.force_login(world.bob)
    html = client.get(document.get_absolute_url()).content.decode()
    assert "<td>49901</td>" in html and "<td>50000</td>" in html and "<td>50001</td>" not in html
