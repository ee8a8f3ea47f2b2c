"""Signing in through the real form (the Chromium fixture is `browser` in tests/conftest.py)."""

from __future__ import annotations

from tests.conftest import PASSWORD


def sign_in(page, server, username: str, next_path: str) -> None:
    """Sign in through the login form and land on ``next_path``."""
    page.goto(f"{server.http}/accounts/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{next_path}")
