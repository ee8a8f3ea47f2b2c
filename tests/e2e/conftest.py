"""The one headless Chromium fixture of the browser tests, and signing in through the real form."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.conftest import PASSWORD

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser():
    """A headless Chromium; each ``browser.new_page()`` has its own cookies."""
    if not shutil.which(CHROMIUM):
        if os.environ.get("STREAMSITE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} is required (STREAMSITE_REQUIRE_BROWSER=1)")
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def sign_in(page, server, username: str, next_path: str) -> None:
    """Sign in through the login form and land on ``next_path``."""
    page.goto(f"{server.http}/accounts/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{next_path}")
