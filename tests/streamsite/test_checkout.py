"""A checkout with nothing exported: manage.py in any shell reaches make run's Redis, or says why not."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading

import pytest
import redis

from documents.services import document_create
from streamsite import checkout, hub
from tests.conftest import ROOT, database_url

pytestmark = pytest.mark.django_db(transaction=True)


def manage(*args: str, url_file, **extra: str) -> subprocess.CompletedProcess:
    """``python manage.py ...`` as a second shell would run it: no SECRET_KEY, DEBUG, REDIS_URL."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        # The test database instead of db.sqlite3, and a record file of the
        # test's own instead of var/redis/url (a developer's make run may be up).
        "DATABASE_URL": database_url(),
        "STREAMSITE_REDIS_URL_FILE": str(url_file),
        **extra,
    }
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_development_defaults_apply_only_without_a_secret_key():
    environ: dict[str, str] = {}
    checkout.apply_development_defaults(environ)
    assert environ == {"DEBUG": "1"}
    deployed = {"SECRET_KEY": "set by the deployment"}
    checkout.apply_development_defaults(deployed)
    assert "DEBUG" not in deployed


def test_without_make_run_a_command_that_needs_redis_says_so_in_one_line(world, tmp_path):
    tsv = tmp_path / "t.tsv"
    tsv.write_text("a\tb\n1\t2\n")
    done = manage("importtsv", str(tsv), "--tenant", "acme", url_file=tmp_path / "absent")
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "make run" in done.stderr
    assert "Traceback" not in done.stderr
    from documents.models import Document

    assert not Document.objects.exists()  # nothing imported that nobody would hear of


def test_a_second_shell_reaches_the_redis_make_run_recorded(world, tmp_path):
    document = document_create(tenant=world.acme, name="shared", data=b"a\n1\n").document
    url_file = tmp_path / "url"
    url_file.write_text(os.environ["REDIS_URL"] + "\n")  # what make run records
    subscriber = redis.Redis.from_url(os.environ["REDIS_URL"]).pubsub()
    subscriber.subscribe(f"{hub.CHANNEL_PREFIX}document.{document.uuid}")
    subscriber.get_message(timeout=2)  # the subscription's confirmation
    heard: list[bytes] = []
    listener = threading.Thread(
        target=lambda: heard.append(subscriber.get_message(timeout=30) or {}), daemon=True
    )
    listener.start()
    tsv = tmp_path / "v2.tsv"
    tsv.write_text("a\tb\n2\t3\n")
    done = manage("importtsv", str(tsv), "--tenant", "acme", "--document", str(document.uuid),
                  url_file=url_file)  # fmt: skip
    listener.join(30)
    assert done.returncode == 0, done.stderr
    assert heard and heard[0].get("type") == "message", "the open viewers heard nothing"
    subscriber.close()


async def test_favicon_ico_leads_to_the_sites_icon(async_client):
    response = await async_client.get("/favicon.ico")
    # The content-hashed name of the collected copy (streamsite/staticfiles.py).
    assert response.status_code == 301
    assert re.fullmatch(r"/static/favicon\.[0-9a-f]{12}\.svg", response["Location"])
    icon = await async_client.get(response["Location"])
    assert icon.status_code == 200 and icon["Content-Type"] == "image/svg+xml"
    assert b"<svg" in b"".join([chunk async for chunk in icon.streaming_content])


def test_the_server_url_record_is_removed_only_by_the_run_that_wrote_it(tmp_path, monkeypatch):
    monkeypatch.setattr(checkout, "SERVER_URL_FILE", tmp_path / "server" / "url")
    assert checkout.recorded_server_url() is None
    checkout.record_server_url("http://127.0.0.1:8001")
    checkout.record_server_url("http://127.0.0.1:8002")  # a second make run took over
    checkout.forget_server_url("http://127.0.0.1:8001")
    assert checkout.recorded_server_url() == "http://127.0.0.1:8002"
    checkout.forget_server_url("http://127.0.0.1:8002")
    assert checkout.recorded_server_url() is None
