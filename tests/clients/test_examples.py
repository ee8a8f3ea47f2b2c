"""examples/ (the seeds' programs on the client library) run against the real server.

Each is run as a user would, ``python examples/<name>.py ...``, bounded by a count.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from documents.services import document_create
from streams.models import FeedKind, ProducerKind, Sample
from streams.services import feed_create, producer_create
from tests.conftest import ROOT, server_env
from tests.documents.conftest import numbers_tsv

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def run_example(name: str, *args: str, timeout: float = 60) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / f"{name}.py"), *args],
        cwd=ROOT, env=server_env(), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def external_feed(world, name: str, kind: str):
    feed = feed_create(tenant=world.acme, name=name, kind=kind, share=True)
    _, token = producer_create(feed=feed, kind=ProducerKind.EXTERNAL)
    return feed, token


def stored(feed) -> list[tuple[float, float]]:
    return list(Sample.objects.filter(feed=feed).order_by("seq").values_list("value", "ts"))


def test_bernoulli_producer_and_beta_binomial_viewer(daphne, world):
    feed, token = external_feed(world, "coin", FeedKind.BINARY)
    produced = run_example(
        "bernoulli_producer", daphne.http, str(feed.uuid), "--token", token,
        "--count", "30", "--interval", "0.01",
    )  # fmt: skip
    assert produced[0] == "True p = 0.72"
    values = [value for value, _ in stored(feed)]
    assert [f"Sending message {int(v)}" for v in values] == produced[1:]
    viewed = run_example(
        "beta_binomial_viewer", daphne.http, str(feed.uuid), f"--key={feed.share_key}",
        "--since", "0", "--count", "30",
    )  # fmt: skip
    successes = int(sum(values))
    assert len(viewed) == 30
    assert viewed[-1] == f"α = {2 + successes}; β = {2 + 30 - successes}; mean = {successes / 30}"


def test_clock_iopin_and_buzzer_chain(daphne, world):
    clock, clock_token = external_feed(world, "clock", FeedKind.NUMERIC)
    pin, pin_token = external_feed(world, "pin", FeedKind.BINARY)
    buzz, buzz_token = external_feed(world, "buzz", FeedKind.BINARY)
    ticks = run_example(
        "clock", daphne.http, str(clock.uuid), "--token", clock_token, "-t", "8", "-d", "0.01"
    )
    assert ticks[:2] == ["[ clock ] > 0", "[ clock ] < 1"] and ticks[-1] == "[ clock ] < 8"
    run_example(
        "iopin", daphne.http, str(clock.uuid), f"--key={clock.share_key}",
        str(pin.uuid), "--token", pin_token, "--since", "0", "--count", "8",
    )  # fmt: skip
    clock_ts = [ts for _, ts in stored(clock)]
    pin_samples = stored(pin)
    assert [ts for _, ts in pin_samples] == clock_ts  # one pin state per tick, with its ts
    run_example(
        "buzzer", daphne.http, str(pin.uuid), f"--key={pin.share_key}",
        str(buzz.uuid), "--token", buzz_token, "--since", "0", "--count", "8",
    )  # fmt: skip
    previous, flips = 0, []
    for value, ts in pin_samples:
        if previous == 0 and value == 1:
            flips.append((1.0, ts))
        previous = int(value)
    assert stored(buzz) == flips


def test_tsv_share_uploads_turns_and_shows_the_shared_page(daphne, world, tmp_path):
    document = document_create(
        tenant=world.acme, name="numbers", data=numbers_tsv(10, tag="v1"), share="steer"
    ).document
    upload = tmp_path / "new.tsv"
    upload.write_bytes(numbers_tsv(250, tag="v2"))
    shown = run_example(
        "tsv_share", daphne.http, str(document.uuid), f"--key={document.share_key}",
        "--upload", str(upload), "--page", "2", "--count", "1",
    )  # fmt: skip
    assert shown[0] == "uploaded version 2: 250 rows"
    assert shown[1] == "page 2/3 of version 2, 250 rows"
    assert shown[2:4] == ["n\tsquare\ttag", "101\t10201\tv2"]
