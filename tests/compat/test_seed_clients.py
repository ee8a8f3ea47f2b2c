"""The write-ups' own client programs (tests/compat/seed*.py, recreated from the posts)
against the real server, with only their URL changed."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
from playwright.sync_api import expect

from documents.services import document_create, document_settings_update
from streams.models import FeedKind, ProducerKind, Sample
from streams.services import feed_create, producer_create, samples_append
from tests.conftest import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

HERE = Path(__file__).parent


def run(script: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(HERE / script), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_seed_000_viewer_prints_its_posterior_from_plain_frames(daphne, acme_feed):
    feed = acme_feed.feed
    url = f"{daphne.ws}/ws/feeds/{feed.uuid}/?key={feed.share_key}&format=plain"
    viewer = subprocess.Popen(
        [sys.executable, str(HERE / "seed000_viewer.py"), url],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    threading.Timer(30, viewer.kill).start()  # a hung viewer fails the test, not the run
    try:
        assert viewer.stdout.readline().startswith("Reading")
        time.sleep(1.5)  # connected and joined
        values = [1, 0, 1, 1, 0, 1]
        for value in values:
            samples_append(feed=feed, values=[(value, None)])
        lines: list[str] = []
        while len(lines) < len(values) and (line := viewer.stdout.readline()):
            if line.startswith("α"):
                lines.append(line.strip())
    finally:
        viewer.kill()
        viewer.wait()
    successes = sum(values)
    assert lines[-1] == (
        f"α = {2 + successes}; β = {2 + len(values) - successes}; mean = {successes / len(values)}"
    ), lines


def test_seed_000_producer_publishes_bare_numbers_and_gets_acks(daphne, acme_feed):
    feed = acme_feed.feed
    url = f"{daphne.ws}/ws/feeds/{feed.uuid}/publish/?token={acme_feed.token}"
    done = run("seed000_producer.py", url, "5")
    assert done.returncode == 0, done.stderr
    acks = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [(ack["type"], ack["seq"]) for ack in acks] == [("ack", n) for n in range(1, 6)], acks
    assert Sample.objects.filter(feed=feed).count() == 5
    assert set(Sample.objects.filter(feed=feed).values_list("value", flat=True)) <= {0.0, 1.0}


def test_seed_004_table_turns_pages_with_bare_numbers_and_sees_only_pages(daphne, world):
    rows = "".join(f"{n}\tx\n" for n in range(1, 251))
    document = document_create(
        tenant=world.acme, name="t", data=f"n\tv\n{rows}".encode(), share="steer"
    ).document
    url = f"{daphne.ws}/ws/documents/{document.uuid}/?key={document.share_key}&format=plain"
    done = run("seed004_table.py", url, "3")
    assert done.returncode == 0, done.stderr
    shown = [line.split(" ") for line in done.stdout.splitlines()]
    assert shown[0] == ["1", "250", "1"] and shown[-1] == ["3", "250", "201"], shown


def seed003_clock(daphne, feed, token, ticks: int) -> tuple[list[str], list[dict]]:
    """Runs seed 003's clock against ``feed``: the ticks it printed sending, and what it got."""
    path = f"/ws/feeds/{feed.uuid}/publish/?token={token}"
    done = run(
        "seed003_arduino.py", "clock", "-s", "127.0.0.1", "-p", str(daphne.port),
        "--path", path, "-t", str(ticks), "-d", "0.05",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    sent = [line for line in lines if line.startswith("[ clock ] > ")]
    received = [json.loads(line.split(" < ", 1)[1]) for line in lines if " < " in line]
    return sent, received


def test_seed_003_clock_sends_its_ticks_and_gets_an_ack_for_each(daphne, world):
    feed = feed_create(tenant=world.acme, name="clock", kind=FeedKind.NUMERIC)
    _, token = producer_create(feed=feed, kind=ProducerKind.EXTERNAL)
    sent, received = seed003_clock(daphne, feed, token, 5)
    assert sent == [f"[ clock ] > {n}" for n in range(5)]
    assert received == [{"type": "ack", "seq": n} for n in range(1, 6)]
    stored = Sample.objects.filter(feed=feed).order_by("seq").values_list("value", flat=True)
    assert list(stored) == [0, 1, 2, 3, 4]


def test_seed_003_clock_on_a_binary_feed_is_told_which_ticks_it_cannot_take(daphne, acme_feed):
    sent, received = seed003_clock(daphne, acme_feed.feed, acme_feed.token, 4)
    assert len(sent) == 4
    assert received[:2] == [{"type": "ack", "seq": 1}, {"type": "ack", "seq": 2}]
    assert [frame["error"] for frame in received[2:]] == ["bad_value", "bad_value"], received
    stored = Sample.objects.filter(feed=acme_feed.feed).order_by("seq")
    assert list(stored.values_list("value", flat=True)) == [0, 1]


@pytest.fixture
def seed002_site():
    """Another site serving seed 002's page, on the loopback as the server is (Chromium
    blocks a page of a public site from reaching a loopback address)."""
    html = (HERE / "seed002_parser.html").read_bytes()

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def seed002_page(browser, site: str, ws_url: str):
    page = browser.new_page()
    page.goto(f"{site}/parser?{urlencode({'ws': ws_url})}")
    return page


def test_seed_002_page_turns_pages_with_bare_numbers_and_uploads_for_everyone(
    daphne, world, browser, seed002_site, tmp_path
):
    rows = "".join(f"{n}\tx\n" for n in range(1, 251))
    document = document_create(
        tenant=world.acme, name="t", data=f"n\tv\n{rows}".encode(), share="steer"
    ).document
    document_settings_update(document=document, allowed_origins=seed002_site)
    url = f"{daphne.ws}/ws/documents/{document.uuid}/?key={document.share_key}&format=plain"
    turner, watcher = (seed002_page(browser, seed002_site, url) for _ in range(2))
    for page in (turner, watcher):
        expect(page.locator("#current")).to_have_text("1")
        expect(page.locator("#total")).to_have_text("250")
        expect(page.locator("#rows tr").first).to_contain_text("1x")

    turner.fill("#page", "3")
    turner.dispatch_event("#page", "change")  # pageChanged(): ws.send(3)
    for page in (turner, watcher):
        expect(page.locator("#current")).to_have_text("3")
        expect(page.locator("#rows tr").first).to_contain_text("201x")
        expect(page.locator("#rows tr")).to_have_count(50)

    upload = tmp_path / "new.tsv"
    upload.write_text("a\tb\nfirst\tone\nsecond\ttwo\n")
    turner.set_input_files("#file", str(upload))  # uploadFile(): ws.send(ArrayBuffer)
    for page in (turner, watcher):
        expect(page.locator("#total")).to_have_text("2")
        expect(page.locator("#current")).to_have_text("1")
        expect(page.locator("#rows tr").first).to_contain_text("firstone")
    # Nothing but pages reached the uploader's handler: the table was never blanked.
    expect(turner.locator("#rows tr")).to_have_count(2)
    document.refresh_from_db()
    assert document.version == 2
