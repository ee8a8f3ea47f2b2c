"""The feed page in Chromium: readable charts, a phone-sized layout, screen readers, and the
close codes (a revoked key stops the page and says why; error frames are shown)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from streams.services import feed_share_key_rotate, samples_append
from tests.conftest import ROOT, Daphne, server_env
from tests.e2e.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
SCREENSHOTS = ROOT / "var" / "screenshots"

LIVE = "document.getElementById('status').dataset.state === 'live'"
STOPPED = "document.getElementById('status').dataset.state === 'stopped'"

# Every element whose box reaches past the viewport's sides, and how wide the page scrolls.
OVERFLOW = """() => {
    const width = document.documentElement.clientWidth;
    const past = [...document.querySelectorAll('body *')].filter((el) => {
        const box = el.getBoundingClientRect();
        return box.width > 0 && (box.right > width + 0.5 || box.left < -0.5);
    }).map((el) => `${el.tagName.toLowerCase()}#${el.id}.${el.className}`);
    return {width, scrollWidth: document.documentElement.scrollWidth, past};
}"""


def in_thread(function, **kwargs):
    """ORM calls from a thread: Playwright's sync API keeps an event loop running in this one."""

    def call():
        try:
            return function(**kwargs)
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result()


def ticks(page, canvas: str) -> dict[str, list[str]]:
    data = page.evaluate(f"() => ({{...document.getElementById('{canvas}').dataset}})")
    return {"x": json.loads(data["xTicks"]), "y": json.loads(data["yTicks"])}


@pytest.fixture
def coin_with_history(acme_feed):
    """acme's binary feed with 150 samples, one every 100 ms, ending now."""
    now = time.time()
    samples_append(
        feed=acme_feed.feed,
        values=[(int(i % 4 != 0), now - 15 + i / 10) for i in range(150)],
    )
    return acme_feed


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_feed_page_fits_the_screen_and_its_charts_have_labelled_axes(
    world, coin_with_history, browser, viewport
):
    server = Daphne().start()
    try:
        page = browser.new_page(viewport=viewport)
        sign_in(page, server, "alice", coin_with_history.feed.get_absolute_url())
        page.wait_for_function(LIVE)
        page.wait_for_function("document.getElementById('chart').dataset.points === '150'")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        name = "desktop" if viewport is DESKTOP else "phone"
        page.screenshot(path=str(SCREENSHOTS / f"feed-{name}.png"), full_page=True)

        layout = page.evaluate(OVERFLOW)
        assert layout["past"] == [] and layout["scrollWidth"] <= layout["width"]
        # Both charts fill their card, whatever the width.
        for canvas in ("chart", "posterior"):
            box = page.locator(f"#{canvas}").bounding_box()
            card = page.locator(f"#{canvas}").locator("xpath=ancestor::section").bounding_box()
            assert box["width"] > card["width"] * 0.8 and box["x"] + box["width"] <= layout["width"]

        samples_axes = ticks(page, "chart")
        assert len(samples_axes["x"]) >= 2
        assert all(len(label.split(":")) == 3 for label in samples_axes["x"])  # hh:mm:ss
        assert float(samples_axes["y"][0]) == 0 and float(samples_axes["y"][-1]) == 1
        posterior_axes = ticks(page, "posterior")
        assert len(posterior_axes["x"]) >= 2 and len(posterior_axes["y"]) >= 2
        assert float(posterior_axes["y"][0]) == 0

        # The prior is named beside the posterior, with the live numbers.
        stats = coin_with_history.feed.__class__.objects.get(pk=coin_with_history.feed.pk).stats
        title = page.locator("#posterior-title").inner_text()
        assert "prior Beta(2, 2)" in title
        assert "Beta(" in title and "successes" in title and "failures" in title
        caption = page.locator("#posterior-caption").inner_text()
        assert caption.startswith("Posterior Beta(") and "95% credible interval" in caption
        assert stats  # the feed has statistics, so the caption is about real numbers
        # The owner sees the share link and the history download.
        share_url = page.locator("#share-url").input_value()
        assert share_url.endswith(f"?key={coin_with_history.feed.share_key}")
        assert page.locator("#download-csv").inner_text() == "Download history (CSV)"
    finally:
        server.stop()


def test_history_link_downloads_the_csv(world, coin_with_history, browser):
    server = Daphne().start()
    try:
        page = browser.new_page()
        sign_in(page, server, "bob", coin_with_history.feed.get_absolute_url())
        with page.expect_download() as download:
            page.click("#download-csv")
        lines = open(download.value.path()).read().splitlines()
        assert download.value.suggested_filename == "coin samples.csv"
        assert lines[0].startswith("seq,ts,value,") and len(lines) == 151
        # A viewer is no owner: no share link.
        assert page.locator("#share-url").count() == 0
    finally:
        server.stop()


def test_live_numbers_are_announced_to_screen_readers_now_and_then(
    world, coin_with_history, browser
):
    server = Daphne().start()
    producer = subprocess.Popen(
        [sys.executable, "manage.py", "runproducer", str(coin_with_history.producer.uuid)],
        cwd=ROOT,
        env=server_env(),
        stdout=subprocess.DEVNULL,
    )
    try:
        page = browser.new_page()
        sign_in(page, server, "bob", coin_with_history.feed.get_absolute_url())
        region = page.locator("#announce")
        assert region.get_attribute("aria-live") == "polite"
        page.wait_for_function("document.getElementById('announce').textContent !== ''")
        first = region.text_content()
        assert "Posterior mean" in first and "95% credible interval" in first
        # Samples arrive ten times a second; the region changes only now and then.
        changes = page.evaluate(
            """() => new Promise((resolve) => {
                const seen = [document.getElementById('announce').textContent];
                new MutationObserver(() => {
                    seen.push(document.getElementById('announce').textContent);
                }).observe(document.getElementById('announce'),
                           {childList: true, characterData: true, subtree: true});
                const start = Number(document.getElementById('last-seq').textContent);
                const poll = setInterval(() => {
                    const seq = Number(document.getElementById('last-seq').textContent);
                    if (seen.length >= 2 && seq >= start + 20) {
                        clearInterval(poll);
                        resolve({seen, samples: seq - start});
                    }
                }, 50);
            })"""
        )
        assert changes["seen"][-1] != first
        assert len(changes["seen"]) - 1 < changes["samples"] / 5  # not once per sample
        # The chart's text alternative is up to date with the numbers (one frame apart).
        page.wait_for_function(
            """() => document.getElementById('chart-caption').textContent.includes(
                `sample ${document.getElementById('last-seq').textContent} of`)"""
        )
    finally:
        producer.terminate()
        producer.wait(10)
        server.stop()


def test_revoked_share_key_stops_the_page_with_the_reason_and_no_reconnect(
    coin_with_history, browser
):
    server = Daphne().start()
    try:
        page = browser.new_page()
        opened = []
        page.on("websocket", lambda ws: opened.append(ws.url))
        feed = coin_with_history.feed
        page.goto(f"{server.http}{feed.get_absolute_url()}?key={feed.share_key}")
        page.wait_for_function(LIVE)
        assert len(opened) == 1

        in_thread(feed_share_key_rotate, feed=feed)
        page.wait_for_function(STOPPED)
        alert = page.locator("#alert")
        assert alert.is_visible()
        assert "Access was revoked" in alert.inner_text()
        # Longer than any reconnect delay of the client (the first is at most 0.625 s).
        page.wait_for_timeout(2500)
        assert len(opened) == 1
        assert page.locator("#status").inner_text() == "stopped"
        page.screenshot(path=str(SCREENSHOTS / "feed-revoked.png"))
    finally:
        server.stop()


def test_too_many_connections_stops_the_second_page_and_shows_the_servers_error(
    world, coin_with_history, browser
):
    server = Daphne(MAX_CONNECTIONS_PER_USER="1").start()
    try:
        path = coin_with_history.feed.get_absolute_url()
        session = browser.new_context()  # one cookie jar: both pages are bob's
        first = session.new_page()
        sign_in(first, server, "bob", path)
        first.wait_for_function(LIVE)
        second = session.new_page()
        opened = []
        second.on("websocket", lambda ws: opened.append(ws.url))
        second.goto(f"{server.http}{path}")
        second.wait_for_function(STOPPED)
        text = second.locator("#alert").inner_text()
        assert "Too many live pages" in text
        assert "at most 1 open connections per user" in text  # the error frame's message
        attempts = len(opened)  # 1; once in a while 2, when the first close arrives as 1006
        second.wait_for_timeout(2500)
        assert len(opened) == attempts
        assert first.evaluate(f"() => {LIVE}")  # the first page is unaffected
    finally:
        server.stop()


def test_an_error_frame_is_shown_and_the_page_stays_live(world, coin_with_history, browser):
    server = Daphne().start()
    try:
        page = browser.new_page()
        # Keep the page's sockets reachable, so the test can misbehave on one.
        page.add_init_script(
            """(() => {
                const Native = window.WebSocket;
                window.openSockets = [];
                window.WebSocket = class extends Native {
                    constructor(...args) { super(...args); window.openSockets.push(this); }
                };
            })()"""
        )
        sign_in(page, server, "bob", coin_with_history.feed.get_absolute_url())
        page.wait_for_function(LIVE)
        alert = page.locator("#alert")
        assert alert.is_hidden()
        # More frames than the viewer socket's burst: the server answers rate_limited.
        page.evaluate("() => { for (let i = 0; i < 41; i++) window.openSockets[0].send('{}'); }")
        page.wait_for_function("!document.getElementById('alert').hidden")
        assert "too many frames; slow down" in alert.inner_text()
        assert page.evaluate(f"() => {LIVE}")
    finally:
        server.stop()


def test_numeric_feed_page_fits_a_phone_with_a_value_axis_of_its_own(world, globex_feed, browser):
    now = time.time()
    samples_append(
        feed=globex_feed.feed,
        values=[(20 + 5 * math.sin(i / 9) + i / 40, now - 300 + i * 2) for i in range(150)],
    )
    server = Daphne().start()
    try:
        page = browser.new_page(viewport=PHONE)
        sign_in(page, server, "charlie", globex_feed.feed.get_absolute_url())
        page.wait_for_function(LIVE)
        page.wait_for_function("document.getElementById('chart').dataset.points === '150'")
        page.screenshot(path=str(SCREENSHOTS / "feed-numeric-phone.png"), full_page=True)
        layout = page.evaluate(OVERFLOW)
        assert layout["past"] == [] and layout["scrollWidth"] <= layout["width"]
        axes = ticks(page, "chart")
        values = [float(label) for label in axes["y"]]
        assert values[0] <= 15.5 and values[-1] >= 26  # the range of the samples, not 0 to 1
        assert all(len(label.split(":")) >= 2 for label in axes["x"]) and len(axes["x"]) >= 2
        assert page.locator("#posterior").count() == 0
        assert "Mean" in page.locator("#chart-caption").text_content()
    finally:
        server.stop()
