"""An export flood: six concurrent anonymous exports of a ~9.9 MB document.

Past QUOTA_CONCURRENT_EXPORTS the fixed server answers 429
``quota_exceeded`` naming ``concurrent_exports``; the exports it serves are
streamed, so the lot costs the server little memory; the neighbour keeps
signing in and loading its pages.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import threading
import time
from dataclasses import dataclass

import pytest

from documents.services import document_create
from tests.documents.conftest import tsv_of_size
from tests.isolation.conftest import CAPS, assert_isolated
from tests.isolation.harness import ATTACKER_ADDRESS

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

EXPORTS = 6
DOCUMENT_BYTES = 9_900_000
RSS_BOUND_MB = 150


@dataclass
class Export:
    status: int
    refusal: dict | None
    lines: int
    size: int
    seconds_to_status: float

    def __str__(self) -> str:
        if self.status == 200:
            return f"200 ({self.size / 1e6:.1f} MB, status after {self.seconds_to_status:.1f} s)"
        return f"{self.status} {self.refusal}"


def test_exports_past_the_concurrency_quota_get_429_and_are_streamed(server, world, probed):
    data = tsv_of_size(DOCUMENT_BYTES)
    document = document_create(tenant=world.acme, name="big", data=data, share="follow").document
    path = f"/documents/{document.uuid}/export.tsv?key={document.share_key}"
    cap = CAPS["QUOTA_CONCURRENT_EXPORTS"]
    start = threading.Barrier(EXPORTS)
    # Nobody reads a body before every request has its status: a streamed export
    # holds its slot meanwhile, as a slow client's would.
    answered = threading.Barrier(EXPORTS)

    def export() -> Export:
        connection = http.client.HTTPConnection(
            "127.0.0.1", server.port, timeout=120, source_address=(ATTACKER_ADDRESS, 0)
        )
        try:
            start.wait(30)
            began = time.monotonic()
            try:
                connection.request("GET", path)
                response = connection.getresponse()
            except BaseException:
                answered.abort()  # nobody waits for this one
                raise
            seconds = time.monotonic() - began
            with contextlib.suppress(threading.BrokenBarrierError):
                answered.wait(120)
            body = response.read()
        finally:
            connection.close()
        refusal = None
        if response.status != 200:
            try:
                refusal = json.loads(body)
            except ValueError:
                refusal = {"body": body[:100].decode(errors="replace")}
        return Export(response.status, refusal, body.count(b"\n"), len(body), seconds)

    async def attack() -> list[Export]:
        return await asyncio.gather(*(asyncio.to_thread(export) for _ in range(EXPORTS)))

    outcome = probed(
        attack, label=f"export flood ({EXPORTS} x {DOCUMENT_BYTES / 1e6:.1f} MB)", sign_in=True
    )
    exports = outcome.result
    print(f"attacker: {[str(e) for e in exports]}")
    served = [e for e in exports if e.status == 200]
    refused = [
        e
        for e in exports
        if e.status == 429
        and (e.refusal or {}).get("error") == "quota_exceeded"
        and (e.refusal or {}).get("limit") == "concurrent_exports"
    ]
    problems = []
    if not served or len(served) > cap:
        problems.append(
            f"attacker: {len(served)} of {EXPORTS} concurrent exports served (cap {cap})"
        )
    if len(served) + len(refused) != EXPORTS:
        others = [str(e) for e in exports if e not in served and e not in refused]
        problems.append(f"attacker: answers neither 200 nor 429 concurrent_exports: {others}")
    incomplete = [str(e) for e in served if e.lines != document.row_count + 1]
    if incomplete:
        problems.append(
            f"attacker: exports cut short ({document.row_count + 1} lines expected): {incomplete}"
        )
    assert_isolated(outcome, rss_bound_mb=RSS_BOUND_MB, attacker_problems=problems)
