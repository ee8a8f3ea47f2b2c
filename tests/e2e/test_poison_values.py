"""A tenant publishing poison values cannot fail another tenant's publishes (the real server)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time

import pytest
import websockets

from streams.models import Feed, FeedKind, ProducerKind, Sample
from streams.services import feed_create, producer_create
from tests.conftest import Daphne
from tests.streams.wedged import wedge_with_1e308

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

VICTIM_FRAMES = 300
# What the reviewer sent: each overflowed the old running variance, and the
# failed encode rolled back every publisher's samples in the same transaction.
POISON = [
    {"values": [1e200, -1e200]},
    {"value": 1e308},
    {"value": -1e308},
]


def test_poison_frames_of_one_tenant_leave_another_tenants_producer_untouched(
    acme_feed, globex_feed, tmp_path
):
    """Two attackers on globex, every 2 ms: poison values on a fresh numeric feed, and
    plain values on a feed wedged by an old 1e308 (those pass validation and are
    refused in the writer, inside the victim's batches). acme's binary producer
    sends 300 frames meanwhile: every one is acknowledged, in order."""
    wedged = feed_create(tenant=globex_feed.feed.tenant, name="wedged", kind=FeedKind.NUMERIC)
    _, wedged_token = producer_create(feed=wedged, kind=ProducerKind.EXTERNAL)
    wedge_with_1e308(wedged)
    log_path = tmp_path / "server.log"
    server = Daphne(log_path=log_path).start()
    victim = acme_feed.feed
    try:
        victim_replies, attacker_replies, seconds = asyncio.run(
            _scenario(server, victim, acme_feed.token, [
                (globex_feed.feed, globex_feed.token, POISON),
                (wedged, wedged_token, [{"value": 1}, {"values": [1, 2, 3]}]),
            ])
        )  # fmt: skip
    finally:
        server.stop()
    log = log_path.read_text(errors="replace")
    # The access log names every socket's path; what must not name the victim is an error.
    about_victim = [
        line
        for line in log.splitlines()
        if str(victim.uuid) in line and not re.search(r"\bWS[A-Z]+\b", line)
    ]
    errors = [r for r in victim_replies if r["type"] == "error"]
    print(
        f"\nvictim: {len(victim_replies) - len(errors)} acks, {len(errors)} errors "
        f"({sorted({e['error'] for e in errors})}) of {VICTIM_FRAMES} frames in {seconds:.2f} s; "
        f"attacker: {len(attacker_replies)} replies, "
        f"{sum(r['type'] == 'error' for r in attacker_replies)} errors; "
        f"server log: {log.count('Traceback')} tracebacks, "
        f"{len(about_victim)} other lines naming the victim"
    )
    assert errors == []
    assert [r["seq"] for r in victim_replies] == list(range(1, VICTIM_FRAMES + 1))
    assert list(Sample.objects.filter(feed=victim).values_list("seq", flat=True)) == list(
        range(1, VICTIM_FRAMES + 1)
    )
    assert attacker_replies and all(r["error"] == "bad_value" for r in attacker_replies)
    assert "Traceback" not in log and about_victim == []
    assert Feed.objects.get(pk=globex_feed.feed.pk).last_seq == 0
    assert Feed.objects.get(pk=wedged.pk).last_seq == 1


async def _scenario(server, victim, victim_token, attackers):
    stop = asyncio.Event()
    attacker_replies: list[dict] = []

    async def attack(feed, token, frames):
        url = f"{server.ws}/ws/feeds/{feed.uuid}/publish/?token={token}"
        async with websockets.connect(url) as socket:

            async def read():
                async for text in socket:
                    attacker_replies.append(json.loads(text))

            reader = asyncio.create_task(read())
            sent = 0
            while not stop.is_set():
                await socket.send(json.dumps(frames[sent % len(frames)]))
                sent += 1
                await asyncio.sleep(0.002)
            await asyncio.sleep(0.5)  # the replies to the last frames
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def produce():
        url = f"{server.ws}/ws/feeds/{victim.uuid}/publish/?token={victim_token}"
        async with websockets.connect(url) as socket:
            await asyncio.sleep(0.2)  # the attackers are at it already
            started = time.monotonic()

            async def send():
                for index in range(VICTIM_FRAMES):
                    await socket.send(json.dumps({"value": index % 2}))
                    await asyncio.sleep(0.003)

            sender = asyncio.create_task(send())
            async with asyncio.timeout(60):
                replies = [json.loads(await socket.recv()) for _ in range(VICTIM_FRAMES)]
            await sender
            return replies, time.monotonic() - started

    attack_tasks = [asyncio.create_task(attack(*attacker)) for attacker in attackers]
    try:
        replies, seconds = await produce()
    finally:
        stop.set()
        await asyncio.gather(*attack_tasks)
    return replies, attacker_replies, seconds
