"""What a developer's checkout means when nothing is exported. No Django imports.

A deployment sets its configuration in the environment, ``SECRET_KEY`` first
of all (settings refuse to start without it when DEBUG is off). A shell in a
checkout sets nothing: ``make run`` and ``python manage.py ...`` then share
one development setup, whichever shell they run in:

- ``DEBUG`` defaults to on (only while ``SECRET_KEY`` is not in the environment),
  so the development secret key and hosts apply;
- the database is ``db.sqlite3`` in the checkout (settings' default);
- Redis is the private one ``make run`` started: it records its URL in
  ``var/redis/url`` and removes the file when it stops, and settings read it;
- the site is where ``make run`` serves it (``PORT``, ``HOST``): recorded in
  ``var/server/url`` the same way, for commands that talk to the server
  (``tailfeed``'s default ``--url``).
  With no such file there is no Redis to talk to, and a command that needs
  live events says so (``require_live_events``) instead of publishing to
  whatever listens on 127.0.0.1:6379.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
# STREAMSITE_REDIS_URL_FILE is for the tests only (they must not touch a running make run's).
REDIS_URL_FILE = Path(
    os.environ.get("STREAMSITE_REDIS_URL_FILE") or BASE_DIR / "var" / "redis" / "url"
)


def apply_development_defaults(environ: MutableMapping[str, str] = os.environ) -> None:
    """Turn DEBUG on by default in a checkout; a deployment (SECRET_KEY set) is left alone."""
    if not environ.get("SECRET_KEY"):
        environ.setdefault("DEBUG", "1")


SERVER_URL_FILE = Path(
    os.environ.get("STREAMSITE_SERVER_URL_FILE") or BASE_DIR / "var" / "server" / "url"
)


def recorded_redis_url() -> str | None:
    """The URL of the private Redis that ``make run`` keeps running, if it recorded one."""
    return _recorded(REDIS_URL_FILE)


def record_redis_url(url: str) -> None:
    _record(REDIS_URL_FILE, url)


def forget_redis_url(url: str) -> None:
    """Remove the record, unless another ``make run`` has replaced it since."""
    _forget(REDIS_URL_FILE, url)


def recorded_server_url() -> str | None:
    """The base URL (``http://host:port``) that ``make run`` serves, while it runs."""
    return _recorded(SERVER_URL_FILE)


def record_server_url(url: str) -> None:
    _record(SERVER_URL_FILE, url)


def forget_server_url(url: str) -> None:
    _forget(SERVER_URL_FILE, url)


def _recorded(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _record(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(value + "\n")
    partial.replace(path)


def _forget(path: Path, value: str) -> None:
    if _recorded(path) == value:
        path.unlink(missing_ok=True)
