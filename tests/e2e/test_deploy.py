"""The deployment recipe (deploy/): a real nginx in front of two Daphne processes.

nginx is Debian's (``.ci/run`` installs it). The test configuration includes
deploy/nginx-locations.conf itself, the same file production includes, with
only the static directory changed; the upstream lists the two test processes.
nginx balances round-robin with one worker, so two connections opened one
after the other land on different processes; its access log (with
``$upstream_addr``) proves which.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path

import pytest
import websockets

from documents.services import document_create
from streamsite import nginxproc
from streamsite.nginxproc import DEPLOY, Nginx, replaced
from tests.conftest import ROOT, Daphne, free_port, server_env, unavailable, wait_for_port
from tests.documents.conftest import numbers_tsv
from tests.e2e.clients import next_sample, turn_page

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PRODUCTION_LOCATIONS = "/etc/nginx/snippets/streamsite-locations.conf"


def required_binary(name: str, candidates: list[str]) -> str:
    """The program's path; skips the test when it is missing, fails in CI."""
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    unavailable(f"{name} is not installed (apt-get install {name})")


def nginx_binary() -> str:
    return nginxproc.nginx_binary() or unavailable("nginx is not installed (apt-get install nginx)")


def start_nginx(prefix: Path, site: str, port: int) -> Nginx:
    return nginxproc.start_nginx(nginx_binary(), prefix, site, port)


@pytest.fixture(scope="module")
def static_root(tmp_path_factory, django_db_setup) -> Path:
    nginx_binary()  # skip before doing anything when nginx is missing
    root = tmp_path_factory.mktemp("static")
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"],
        cwd=ROOT,
        env=server_env(STATIC_ROOT=str(root)),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return root


@pytest.fixture(scope="module")
def backends(static_root):
    """Two Daphne processes that leave static files to nginx."""
    servers = [Daphne(SERVE_STATIC="0", STATIC_ROOT=str(static_root)).start() for _ in range(2)]
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def nginx(backends, static_root, tmp_path_factory):
    prefix = tmp_path_factory.mktemp("nginx")
    (prefix / "locations.conf").write_text(nginxproc.locations(static_root))
    port = free_port()
    site = nginxproc.site([b.port for b in backends], port, prefix / "locations.conf")
    server = start_nginx(prefix, site, port)
    yield server
    server.stop()


def fetch(url: str, *, context: ssl.SSLContext | None = None) -> tuple[int, Message, bytes]:
    """Status, headers and body, without following redirects."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect, urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(url, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def assert_on_both_backends(upstreams: list[str], backends: list[Daphne]) -> None:
    assert sorted(upstreams) == sorted(f"127.0.0.1:{b.port}" for b in backends), upstreams


def test_static_files_come_from_nginx_pages_and_health_from_daphne(nginx, backends, static_root):
    status, headers, body = fetch(f"{nginx.http}/static/streams/feed.js")
    assert status == 200
    assert body == (static_root / "streams" / "feed.js").read_bytes()
    cache_control = ", ".join(headers.get_all("Cache-Control"))
    assert "public" in cache_control and "max-age=3600" in cache_control
    # What the pages name: the content-hashed copy, kept for good.
    hashed = json.loads((static_root / "staticfiles.json").read_text())["paths"]["streams/feed.js"]
    status, headers, body = fetch(f"{nginx.http}/static/{hashed}")
    assert status == 200 and body == (static_root / "streams" / "feed.js").read_bytes()
    assert "immutable" in ", ".join(headers.get_all("Cache-Control"))
    assert headers["X-Content-Type-Options"] == "nosniff"
    # The backends themselves no longer serve them (SERVE_STATIC=0).
    assert fetch(f"{backends[0].http}/static/streams/feed.js")[0] == 404
    assert fetch(f"{nginx.http}/accounts/login/")[0] == 200
    status, _, body = fetch(f"{nginx.http}/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"


def test_a_viewer_on_one_process_receives_samples_published_through_the_other(
    nginx, backends, acme_feed
):
    feed = acme_feed.feed
    viewer_path = f"/ws/feeds/{feed.uuid}/"
    publish_path = f"/ws/feeds/{feed.uuid}/publish/"

    async def scenario():
        async with websockets.connect(f"{nginx.ws}{viewer_path}?key={feed.share_key}") as viewer:
            hello = json.loads(await viewer.recv())
            async with websockets.connect(
                f"{nginx.ws}{publish_path}",
                additional_headers={"Authorization": f"Bearer {acme_feed.token}"},
            ) as producer:
                for value in (1, 0, 1):
                    await producer.send(json.dumps({"value": value}))
                acks = [json.loads(await producer.recv())["seq"] for _ in range(3)]
            samples = [await next_sample(viewer) for _ in range(3)]
        return hello, acks, samples

    hello, acks, samples = asyncio.run(scenario())
    assert hello["type"] == "hello" and acks == [1, 2, 3]
    assert [(s["seq"], s["value"]) for s in samples] == [(1, 1), (2, 0), (3, 1)]
    # The viewer and the publisher were on different processes.
    assert_on_both_backends(
        nginx.upstreams_of(viewer_path) + nginx.upstreams_of(publish_path), backends
    )


def test_a_page_change_reaches_a_document_viewer_on_the_other_process(nginx, backends, world):
    document = document_create(
        tenant=world.acme, name="shared", data=numbers_tsv(250), share="steer"
    ).document
    path = f"/ws/documents/{document.uuid}/"
    url = f"{nginx.ws}{path}?key={document.share_key}"
    first, turned = asyncio.run(turn_page(url, url, 3))
    assert first == [1, 1]
    assert [(f["page_no"], f["state"]) for f in turned] == [(3, 2), (3, 2)]
    assert turned[1]["data"][0][0] == "201"  # the first row of page 3
    assert_on_both_backends(nginx.upstreams_of(path), backends)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    openssl = required_binary("openssl", [shutil.which("openssl") or ""])
    certificate, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(certificate)],
        check=True, capture_output=True,
    )  # fmt: skip
    return certificate, key


def test_the_production_site_redirects_to_https_and_serves_wss(backends, acme_feed, tmp_path):
    """deploy/nginx.conf itself, with local ports, a throwaway certificate and tmp logs."""
    certificate, key = self_signed_certificate(tmp_path)
    http_port, https_port = free_port(), free_port()
    (tmp_path / "locations.conf").write_text((DEPLOY / "nginx-locations.conf").read_text())
    site = (DEPLOY / "nginx.conf").read_text()
    backend_lines = "".join(f"    server 127.0.0.1:{b.port};\n" for b in backends)
    for old, new in [
        ("    server 127.0.0.1:8001;\n", backend_lines),
        ("    listen [::]:80;\n", ""),
        ("    listen [::]:443 ssl http2;\n", ""),
        ("listen 80;", f"listen 127.0.0.1:{http_port};"),
        ("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;"),
        ("/etc/ssl/certs/streams.example.org.fullchain.pem", str(certificate)),
        ("/etc/ssl/private/streams.example.org.key", str(key)),
        ("/var/log/nginx/streamsite.access.log", str(tmp_path / "site.access.log")),
        ("/var/log/nginx/streamsite.error.log", str(tmp_path / "site.error.log")),
        (PRODUCTION_LOCATIONS, str(tmp_path / "locations.conf")),
    ]:
        site = replaced(site, old, new)
    server = start_nginx(tmp_path, site, https_port)
    feed = acme_feed.feed
    insecure = ssl.create_default_context()
    insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE

    async def wss_hello() -> dict:
        url = f"wss://127.0.0.1:{https_port}/ws/feeds/{feed.uuid}/?key={feed.share_key}"
        async with websockets.connect(url, ssl=insecure) as viewer:
            return json.loads(await viewer.recv())

    try:
        redirect = fetch(f"http://127.0.0.1:{http_port}/feeds/{feed.uuid}/")
        health = fetch(f"https://127.0.0.1:{https_port}/healthz", context=insecure)
        hello = asyncio.run(wss_hello())
    finally:
        server.stop()
    status, headers, _ = redirect
    assert status == 301 and headers["Location"] == f"https://127.0.0.1/feeds/{feed.uuid}/"
    assert health[0] == 200
    assert hello["type"] == "hello" and hello["feed"]["uuid"] == str(feed.uuid)


def test_behind_nginx_the_address_cap_counts_the_client_not_the_address_it_claims(
    static_root, tmp_path, acme_feed
):
    """Daphne as deployed (--proxy-headers) takes the first X-Forwarded-For address;
    nginx must overwrite the header, or a client would name a new address per socket."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamsite.server", "-b", "127.0.0.1", "-p", str(port),
         "--proxy-headers"],
        cwd=ROOT,
        env=server_env(SERVE_STATIC="0", MAX_CONNECTIONS_PER_ADDRESS="2"),
    )  # fmt: skip
    wait_for_port(port, process)
    (tmp_path / "locations.conf").write_text(nginxproc.locations(static_root))
    nginx_port = free_port()
    site = nginxproc.site([port], nginx_port, tmp_path / "locations.conf")
    proxy = start_nginx(tmp_path, site, nginx_port)
    feed = acme_feed.feed
    url = f"ws://127.0.0.1:{nginx_port}/ws/feeds/{feed.uuid}/?key={feed.share_key}"
    # Addresses nobody else in the run uses (the counts live in a shared Redis).
    client, neighbour = (f"127.{secrets.randbelow(250) + 1}.{secrets.randbelow(250) + 1}.9",
                         f"127.{secrets.randbelow(250) + 1}.{secrets.randbelow(250) + 1}.8")  # fmt: skip

    async def first_frame(source: str, claimed: str) -> dict:
        socket = await websockets.connect(
            url, additional_headers={"X-Forwarded-For": claimed}, local_addr=(source, 0)
        )
        sockets.append(socket)
        return json.loads(await socket.recv())

    async def scenario():
        try:
            spoofed = [await first_frame(client, f"198.51.100.{n}") for n in range(1, 4)]
            return spoofed, await first_frame(neighbour, "198.51.100.1")
        finally:
            for socket in sockets:
                await socket.close()

    sockets: list = []
    try:
        spoofed, other = asyncio.run(scenario())
    finally:
        proxy.stop()
        process.terminate()
        process.wait(10)
    assert [frame["type"] for frame in spoofed] == ["hello", "hello", "error"]
    assert spoofed[2]["limit"] == "connections_per_address"
    assert other["type"] == "hello"


@pytest.mark.parametrize(
    ("override", "collect", "expected"),
    [
        ({}, True, "no issues"),
        ({"SECURE_HSTS_SECONDS": "0"}, True, "security.W004"),
        ({}, False, "streamsite.E004"),
        ({"DATABASE_URL": "sqlite:///db.sqlite3"}, True, "streamsite.W001"),
    ],
    ids=["production", "without-hsts", "without-collectstatic", "on-sqlite"],
)
def test_check_deploy_is_clean_under_production_settings(override, collect, expected, tmp_path):
    """The documented production environment (.env.example) with a real secret key,
    after the recipe's collectstatic (and without it)."""
    environment = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            environment[name] = value
    environment.update(
        SECRET_KEY=secrets.token_urlsafe(50),
        SERVE_STATIC="0",
        STATIC_ROOT=str(tmp_path / "static"),
        **override,
    )
    if collect:
        subprocess.run(
            [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
            cwd=ROOT,
            env=environment,
            check=True,
        )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
    )
    output = result.stdout + result.stderr
    assert expected in output, output
    assert (result.returncode == 0) == (expected == "no issues"), output
