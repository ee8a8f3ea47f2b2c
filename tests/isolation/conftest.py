"""Fixtures of the isolation matrix: a server with small caps, an attacker, a neighbour.

alice (tenant acme) is the attacker, from ATTACKER_ADDRESS; charlie (tenant
globex) is the neighbour, whose probe runs from PROBE_ADDRESS during every attack.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from documents.models import Document
from documents.services import document_create
from streams.models import Feed, FeedKind, ProducerKind, Sample
from streams.services import feed_create, producer_create
from tests.conftest import Daphne
from tests.documents.conftest import numbers_tsv
from tests.isolation.harness import Neighbour, Outcome, under_probe

# Small caps, so that floods are quick. The names are the settings of the
# contract (docs/PROTOCOL.md, "Limits").
CAPS = {
    "MAX_CONNECTIONS_PER_SHARE_KEY": 20,
    "MAX_CONNECTIONS_PER_ADDRESS": 40,
    "MAX_CONNECTIONS_PER_USER": 10,
    "QUOTA_CONCURRENT_UPLOADS": 2,
    "QUOTA_CONCURRENT_EXPORTS": 2,
    "AXES_FAILURE_LIMIT": 5,
}


@dataclass
class Attacker:
    """Alice's tenant: a numeric feed she holds the producer token of, a steerable document."""

    feed: Feed
    token: str
    document: Document


def start_server(tmp_path, **env: Any) -> Daphne:
    forget_slots()
    settings = {name: str(value) for name, value in {**CAPS, **env}.items()}
    return Daphne(log_path=tmp_path / "daphne.log", **settings).start()


def forget_slots() -> None:
    """Start as a fresh installation: the previous test's server was stopped with its
    connections' slots still held, and those expire only 45 s later (streamsite/slots.py)."""
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        stale = list(client.scan_iter("slots:*"))
        if stale:
            client.delete(*stale)
    finally:
        client.close()


def report_server_log(server: Daphne) -> None:
    """Print the tracebacks the server logged, counted by the exception that ended each."""
    if server.log_path is None or not server.log_path.exists():
        return
    endings: dict[str, int] = {}
    lines = server.log_path.read_text(errors="replace").splitlines()
    for number, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            ending = next(
                (later for later in lines[number + 1 :] if not later.startswith(" ")), "?"
            )
            endings[ending[:160]] = endings.get(ending[:160], 0) + 1
    if endings:
        print(f"\nserver log: {sum(endings.values())} tracebacks, ending in: {endings}")


@pytest.fixture
def server(transactional_db, tmp_path):
    """A Daphne of this test's own (so that its memory is this test's), with small caps."""
    instance = start_server(tmp_path)
    yield instance
    instance.stop()
    report_server_log(instance)


@pytest.fixture
def attacker(world) -> Attacker:
    feed = feed_create(tenant=world.acme, name="poison", kind=FeedKind.NUMERIC, share=True)
    _, token = producer_create(feed=feed, kind=ProducerKind.EXTERNAL)
    document = document_create(
        tenant=world.acme, name="steerable", data=numbers_tsv(250), share="steer"
    ).document
    return Attacker(feed, token, document)


@pytest.fixture
def neighbour(world, globex_feed) -> Neighbour:
    """Charlie's tenant as its probe sees it (his feed is numeric, his document steerable)."""
    document = document_create(
        tenant=world.globex, name="ledger", data=numbers_tsv(250), share="follow"
    ).document
    return Neighbour(
        feed_uuid=str(globex_feed.feed.uuid),
        feed_key=globex_feed.feed.share_key,
        token=globex_feed.token,
        document_uuid=str(document.uuid),
        document_key=document.share_key,
        username=world.charlie.username,
    )


def stored_seqs(feed_uuid: str) -> list[int]:
    return list(
        Sample.objects.filter(feed__uuid=feed_uuid).order_by("seq").values_list("seq", flat=True)
    )


@pytest.fixture
def probed(server, neighbour) -> Callable[..., Outcome]:
    """``probed(attack)``: run the coroutine function ``attack`` under the neighbour's probe.

    Returns the Outcome, with the probe's stored samples read back from the
    database, after printing what was measured.
    """

    def run(
        attack: Callable[[], Awaitable[Any]], *, label: str, sign_in: bool = False, **kw: Any
    ) -> Outcome:
        outcome = asyncio.run(under_probe(server, neighbour, attack, sign_in=sign_in, **kw))
        outcome.probe.stored_seqs = stored_seqs(neighbour.feed_uuid)
        print(f"\n[{label}] {outcome}")
        return outcome

    return run


def assert_isolated(
    outcome: Outcome, *, rss_bound_mb: float, attacker_problems: list[str] = ()
) -> None:
    """One assertion for the attacker's clear error, the probe and the server's memory,
    so that a failure lists everything that was measured."""
    problems = [*attacker_problems, *outcome.probe.problems()]
    if outcome.rss.growth_mb > rss_bound_mb:
        problems.append(f"{outcome.rss}: over the bound of +{rss_bound_mb:.0f} MB")
    assert not problems, "\n".join(problems)
