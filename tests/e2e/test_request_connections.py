"""A finished HTTP request leaves no database connection open behind it (real server).

Each request's synchronous code runs in a thread of its own; the server tunes the
garbage collector for thousands of sockets, so a connection left to that thread's
garbage stayed open long enough for PostgreSQL to refuse clients.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import psutil
import pytest
from django.db import connection

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

REQUESTS = 60


def _database_connections(pid: int) -> int:
    """Open connections of the server process to the test database."""
    process = psutil.Process(pid)
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        name = str(Path(s["NAME"]).resolve())
        return sum(1 for f in process.open_files() if f.path == name)
    port = int(s["PORT"] or 5432)
    return sum(1 for c in process.net_connections("tcp") if c.raddr and c.raddr.port == port)


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def test_sixty_page_requests_leave_no_database_connections_behind(daphne):
    before = _database_connections(daphne.process.pid)
    # A shared page of a feed nobody has: each request looks the key up, then 404s.
    statuses = {_get(f"{daphne.http}/feeds/{uuid.uuid4()}/?key=nope") for _ in range(REQUESTS)}
    assert statuses == {404}
    time.sleep(0.5)  # the last answer is sent before its request_finished
    after = _database_connections(daphne.process.pid)
    print(f"\nserver's database connections: {before} before, {after} after {REQUESTS} requests")
    # The consumers' database thread keeps one; anything near REQUESTS is the leak.
    assert after <= before + 2
