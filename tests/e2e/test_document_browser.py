"""Done-when 1: two Chromium pages on one document move together and show a new upload at once."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from documents.services import document_create, document_page_set
from tests.conftest import ROOT, Daphne
from tests.documents.conftest import CORPUS, numbers_tsv
from tests.e2e.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOWN = """() => ({
    version: Number(document.getElementById('version').textContent),
    pageNo: Number(document.getElementById('page-no').textContent),
    totalPages: Number(document.getElementById('total-pages').textContent),
    firstRow: document.querySelector('#sheet tbody tr td:nth-child(2)').textContent,
})"""


def in_thread(function, **kwargs):
    """ORM calls from a thread: Playwright's sync API keeps an event loop running in this one."""

    def call():
        try:
            return function(**kwargs)
        finally:
            # Else the thread's connection outlives it and can hold up dropping the test database.
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result()


def wait_until_shown(page, *, version: int, page_no: int, timeout_ms: float = 5000) -> None:
    page.wait_for_function(
        f"""() => document.getElementById('version').textContent === '{version}'
              && document.getElementById('page-no').textContent === '{page_no}'""",
        polling=10,
        timeout=timeout_ms,
    )


@pytest.fixture
def document(world):
    return document_create(
        tenant=world.acme, name="numbers", data=numbers_tsv(250, tag="v1")
    ).document


def test_two_pages_move_together_and_show_an_upload_within_a_second(world, document, browser):
    server = Daphne().start()
    try:
        path = document.get_absolute_url()
        owner, follower = browser.new_page(), browser.new_page()
        sign_in(owner, server, "alice", path)
        sign_in(follower, server, "bob", path)
        for page in (owner, follower):
            page.wait_for_function("document.getElementById('status').dataset.state === 'live'")
        assert (
            owner.evaluate(SHOWN)
            == follower.evaluate(SHOWN)
            == {
                "version": 1,
                "pageNo": 1,
                "totalPages": 3,
                "firstRow": "1",
            }
        )
        assert follower.locator("#next").count() == 0  # bob follows

        turns = []
        for action, page_no, first_row in [
            ("next", 2, "101"),
            ("goto", 3, "201"),
            ("first", 1, "1"),
        ]:
            started = time.monotonic()
            if action == "goto":
                owner.fill("#goto-page", str(page_no))
                owner.click("#goto button[type=submit]")
            else:
                owner.click(f"[data-go={action}]")
            for page in (follower, owner):
                wait_until_shown(page, version=1, page_no=page_no)
                assert page.evaluate(SHOWN)["firstRow"] == first_row
            turns.append(time.monotonic() - started)

        # A new version through the page's upload form (XMLHttpRequest with progress).
        owner.set_input_files(
            "#upload input[type=file]",
            {
                "name": "v2.tsv",
                "mimeType": "text/tab-separated-values",
                "buffer": numbers_tsv(120, tag="v2"),
            },
        )
        started = time.monotonic()
        owner.click("#upload button[type=submit]")
        for page in (follower, owner):
            wait_until_shown(page, version=2, page_no=1, timeout_ms=1000)
        propagation = time.monotonic() - started
        assert propagation <= 1.0
        assert follower.evaluate(SHOWN) == {
            "version": 2,
            "pageNo": 1,
            "totalPages": 2,
            "firstRow": "1",
        }
        owner.wait_for_function(
            "document.querySelector('#upload .upload-result').textContent.startsWith('Uploaded version 2')"
        )

        # A bad file: the owner sees the line; nobody leaves version 2.
        owner.set_input_files(
            "#upload input[type=file]",
            {
                "name": "bad.tsv",
                "mimeType": "text/tab-separated-values",
                "buffer": (CORPUS / "bad" / "unmatched_quote_line4.tsv").read_bytes(),
            },
        )
        owner.click("#upload button[type=submit]")
        owner.wait_for_function(
            "document.querySelector('#upload .upload-result').textContent.startsWith('Line 4:')"
        )
        assert follower.evaluate(SHOWN)["version"] == owner.evaluate(SHOWN)["version"] == 2

        owner.click("[data-go=next]")
        wait_until_shown(follower, version=2, page_no=2)
        owner.screenshot(path=str(ROOT / "var" / "document-page.png"), full_page=True)

        # The server goes away; the page changes meanwhile; both pages come back on it.
        server.stop()
        follower.wait_for_function(
            "document.getElementById('status').dataset.state === 'reconnecting'"
        )
        in_thread(document_page_set, document=document, page_no=1)
        server.start()
        for page in (follower, owner):
            wait_until_shown(page, version=2, page_no=1, timeout_ms=30_000)
        print(
            f"\npage turns seen by both pages: {', '.join(f'{t * 1000:.0f} ms' for t in turns)}; "
            f"upload (click to both showing it): {propagation * 1000:.0f} ms"
        )
    finally:
        server.stop()


TABLE = """() => Array.from(document.querySelectorAll('#sheet tbody tr')).map((tr) => ({
    span: Array.from(tr.cells).reduce((sum, td) => sum + td.colSpan, 0),
    cells: Array.from(tr.cells).slice(1).filter((td) => !td.classList.contains('pad'))
        .map((td) => td.textContent),
    right: Math.round(tr.cells[tr.cells.length - 1].getBoundingClientRect().right),
}))"""


def test_ragged_rows_show_as_a_full_table_before_and_after_the_socket_renders(world, browser):
    """Rows are stored and sent as the file gave them; the page completes the short ones."""
    data = b'a\tb\tc\n1\n2\t3\t4\n5\t6\t7\t8\n""\t\n'
    ragged = document_create(tenant=world.acme, name="ragged", data=data).document
    expected = [["1"], ["2", "3", "4"], ["5", "6", "7", "8"], ["", ""]]
    server = Daphne().start()
    try:
        path = ragged.get_absolute_url()
        static = browser.new_context(java_script_enabled=False).new_page()
        sign_in(static, server, "alice", path)  # the server-rendered table
        live = browser.new_page()
        sign_in(live, server, "alice", path)
        live.wait_for_function("document.getElementById('status').dataset.state === 'live'")
        for page in (static, live):
            rows = page.evaluate(TABLE)
            # "#" plus a, b, c and the generated column_4 on every row, each
            # ending flush with the header.
            assert [row["span"] for row in rows] == [5, 5, 5, 5]
            assert [row["cells"] for row in rows] == expected
            header_right = page.evaluate(
                "Math.round(document.querySelector('#sheet thead tr').lastElementChild"
                ".getBoundingClientRect().right)"
            )
            assert {row["right"] for row in rows} == {header_right}
    finally:
        server.stop()
