"""The feed page in a real headless Chromium, against the real server."""

import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, Daphne, server_env
from tests.e2e.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def read_numbers(page) -> dict[str, int]:
    return page.evaluate(
        """() => Object.fromEntries(['n', 'alpha', 'beta', 'last-seq'].map(
            id => [id, Number(document.getElementById(id).textContent)]))"""
    )


def test_signed_in_member_sees_samples_arrive_and_the_page_survives_a_restart(
    world, acme_feed, browser
):
    server = Daphne().start()
    producer = subprocess.Popen(
        [sys.executable, "manage.py", "runproducer", str(acme_feed.producer.uuid)],
        cwd=ROOT,
        env=server_env(),
        stdout=subprocess.DEVNULL,
    )
    try:
        page = browser.new_page()
        sign_in(page, server, "bob", acme_feed.feed.get_absolute_url())
        page.wait_for_function("document.getElementById('status').dataset.state === 'live'")
        page.wait_for_function("Number(document.getElementById('n').textContent) >= 3")

        # Samples keep arriving without a reload; each adds exactly one to alpha + beta.
        before = read_numbers(page)
        page.wait_for_function(
            f"Number(document.getElementById('last-seq').textContent) >= {before['last-seq'] + 5}"
        )
        after = read_numbers(page)
        arrived = after["last-seq"] - before["last-seq"]
        assert arrived >= 5
        assert (after["alpha"] + after["beta"]) - (before["alpha"] + before["beta"]) == arrived
        assert after["alpha"] + after["beta"] == after["n"] + 4

        # The server goes away and comes back on the same port: the page reconnects by itself.
        server.stop()
        page.wait_for_function("document.getElementById('status').dataset.state === 'reconnecting'")
        time.sleep(1)
        server.start()
        page.wait_for_function(
            "document.getElementById('status').dataset.state === 'live'", timeout=30_000
        )
        resumed_from = read_numbers(page)["last-seq"]
        page.wait_for_function(
            f"Number(document.getElementById('last-seq').textContent) >= {resumed_from + 3}"
        )
        final = read_numbers(page)
        # Nothing was lost while away: every sample is counted once, and the
        # chart holds every seq from its first to its last, without a hole.
        assert final["alpha"] + final["beta"] == final["n"] + 4
        assert final["n"] == final["last-seq"]
        chart = page.evaluate("() => ({...document.getElementById('chart').dataset})")
        assert int(chart["last"]) >= final["last-seq"] - 1
        assert int(chart["points"]) == int(chart["last"]) - int(chart["first"]) + 1
        # The chart holds the newest 200 samples, or all of them: none skipped
        # at start-up (the page may render before the first sample) or while away.
        assert int(chart["first"]) == max(1, int(chart["last"]) - 199)
        page.screenshot(path=str(ROOT / "var" / "feed-page.png"))
    finally:
        producer.terminate()
        producer.wait(10)
        server.stop()
