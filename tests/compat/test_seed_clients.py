"""The write-ups' own client programs (tests/compat/seed*.py, recreated from the posts)
against the real server, with only their URL changed."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from documents.services import document_create
from streams.models import Sample
from streams.services import samples_append
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
