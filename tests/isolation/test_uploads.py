"""Uploads a tenant controls: an amplifying file, pathological quoting, a flood of big ones.

The attacker needs no account: the steering share key of its own document is
enough (`/documents/<uuid>/upload/?key=` over HTTP, a binary frame on
`/ws/documents/<uuid>/?key=`).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from tests.documents.conftest import tsv_of_size
from tests.isolation.conftest import CAPS, assert_isolated
from tests.isolation.harness import ATTACKER_ADDRESS, MB, Answer, Browser, first_frame, ws_connect

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

KB = 1024
AMPLIFYING_RSS_BOUND_MB = 100
PAGE_FRAME_BOUND = 200 * KB
# Bad quoting may cost this many times what ordinary text of the same size costs
# (parsing and storing it), plus a second of slack.
QUOTING_SLOWDOWN_BOUND = 2.0
# A sanity bound: the ordinary file of the same number of rows costs as much to store.
QUOTING_RSS_BOUND_MB = 300
QUOTING_BYTES = 3 * MB
UPLOAD_FLOOD = 4
UPLOAD_BYTES = 9_900_000
# Two uploads at a time (the cap), each parsing about 10 MB: ~150 MB each, plus slack.
UPLOAD_FLOOD_RSS_BOUND_MB = 400


def amplifying_tsv() -> bytes:
    """The reviewer's file: a 1,000-column header, then 30,000 one-cell rows (about 64 KB)."""
    header = "\t".join(f"c{n}" for n in range(1, 1001))
    return (header + "\n" + "1\n" * 30_000).encode()


def upload_over_http(server, document, data: bytes, *, browser: Browser | None = None) -> Answer:
    browser = browser or Browser(server, source=ATTACKER_ADDRESS)
    browser.csrf()
    return browser.request(
        "POST",
        f"/documents/{document.uuid}/upload/?key={document.share_key}",
        files={"file": ("attack.tsv", data)},
        headers={"Accept": "application/json"},
        timeout=120,
    )


async def follow(server, document):
    """A viewer of the document (as every follower of the shared link is), past its first page."""
    socket = await ws_connect(
        f"{server.ws}/ws/documents/{document.uuid}/?key={document.share_key}",
        source=ATTACKER_ADDRESS,
    )
    await first_frame(socket)
    return socket


async def next_page_frame(socket) -> bytes:
    async with asyncio.timeout(120):
        while True:
            message = await socket.recv()
            if json.loads(message).get("type") == "page":
                return message.encode() if isinstance(message, str) else message


@pytest.mark.parametrize("transport", ["http", "websocket"])
def test_amplifying_upload_costs_what_was_sent(transport, server, attacker, probed):
    data = amplifying_tsv()
    document = attacker.document

    async def attack() -> dict:
        follower = await follow(server, document)
        try:
            if transport == "http":
                answer = await asyncio.to_thread(upload_over_http, server, document, data)
                accepted = answer.status == 200 and (answer.json() or {}).get("type") == "uploaded"
                verdict = f"HTTP {answer}"
            else:
                uploader = await follow(server, document)
                await uploader.send(data)
                frames = []
                async with asyncio.timeout(120):
                    while not frames or frames[-1].get("type") not in ("uploaded", "error"):
                        frames.append(json.loads(await uploader.recv()))
                await uploader.close()
                accepted = frames[-1]["type"] == "uploaded"
                verdict = f"last frame {json.dumps(frames[-1])[:200]}"
            page = await next_page_frame(follower) if accepted else b""
        finally:
            await follower.close()
        return {"accepted": accepted, "verdict": verdict, "page_bytes": len(page)}

    outcome = probed(attack, label=f"amplifying upload ({len(data):,} bytes) over {transport}")
    result = outcome.result
    print(
        f"attacker: {result['verdict']}; the page frame every viewer got: {result['page_bytes']:,} bytes"
    )
    problems = []
    if not result["accepted"]:
        problems.append(f"attacker: the upload was not accepted: {result['verdict']}")
    if result["page_bytes"] > PAGE_FRAME_BOUND:
        problems.append(
            f"viewers: page frame of {result['page_bytes'] / KB:.0f} KB > {PAGE_FRAME_BOUND / KB:.0f} KB"
        )
    assert_isolated(outcome, rss_bound_mb=AMPLIFYING_RSS_BOUND_MB, attacker_problems=problems)


def test_pathological_quoting_parses_in_time_linear_in_its_size(server, attacker, probed):
    # `"a"b`: a quoted field whose closing quote is followed by text, on every line.
    lines = QUOTING_BYTES // 5
    pathological = b"h\n" + b'"a"b\n' * lines
    ordinary = b"h\n" + b"abcd\n" * lines  # the same size and shape, nothing quoted

    async def attack() -> dict:
        timed = {}
        for name, data in (("ordinary", ordinary), ("pathological", pathological)):
            started = time.monotonic()
            answer = await asyncio.to_thread(upload_over_http, server, attacker.document, data)
            timed[name] = (time.monotonic() - started, answer)
        return timed

    outcome = probed(attack, label=f"pathological quoting ({len(pathological) / MB:.1f} MB)")
    (ordinary_s, ordinary_answer), (bad_s, bad_answer) = (
        outcome.result["ordinary"],
        outcome.result["pathological"],
    )
    print(
        f"attacker: ordinary file {ordinary_s:.1f} s ({ordinary_answer.status}), "
        f'`"a"b` file {bad_s:.1f} s ({bad_answer}): {bad_s / ordinary_s:.1f}x'
    )
    problems = []
    if ordinary_answer.status != 200:
        problems.append(f"attacker: the ordinary file was refused: {ordinary_answer}")
    body = bad_answer.json() or {}
    clear = bad_answer.status == 200 or (
        bad_answer.status == 400 and body.get("error") == "invalid_tsv" and body.get("reason")
    )
    if not clear:
        problems.append(f"attacker: the quoted file got no clear answer: {bad_answer}")
    if bad_s > QUOTING_SLOWDOWN_BOUND * ordinary_s + 1:
        problems.append(
            f'attacker: the `"a"b` file took {bad_s:.1f} s, {bad_s / ordinary_s:.1f}x the '
            f"{ordinary_s:.1f} s of an ordinary file of the same size (bound {QUOTING_SLOWDOWN_BOUND}x + 1 s)"
        )
    assert_isolated(outcome, rss_bound_mb=QUOTING_RSS_BOUND_MB, attacker_problems=problems)


def test_uploads_past_the_concurrency_quota_get_429_and_neighbour_signs_in(
    server, attacker, probed
):
    cap = CAPS["QUOTA_CONCURRENT_UPLOADS"]
    data = tsv_of_size(UPLOAD_BYTES)
    browsers = [Browser(server, source=ATTACKER_ADDRESS) for _ in range(UPLOAD_FLOOD)]
    for browser in browsers:
        browser.csrf()
    start = threading.Barrier(UPLOAD_FLOOD)

    def upload(browser: Browser) -> Answer:
        start.wait(30)
        return upload_over_http(server, attacker.document, data, browser=browser)

    async def attack() -> list[Answer]:
        return await asyncio.gather(*(asyncio.to_thread(upload, b) for b in browsers))

    outcome = probed(
        attack, label=f"upload flood ({UPLOAD_FLOOD} x {UPLOAD_BYTES / 1e6:.1f} MB)", sign_in=True
    )
    answers = outcome.result
    print(f"attacker: {[a.status for a in answers]} in {[round(a.seconds, 1) for a in answers]} s")
    accepted = [a for a in answers if a.status == 200]
    refused = [
        a
        for a in answers
        if a.status == 429
        and (a.json() or {}).get("error") == "quota_exceeded"
        and (a.json() or {}).get("limit") == "concurrent_uploads"
    ]
    problems = []
    if len(accepted) > cap or not accepted:
        problems.append(
            f"attacker: {len(accepted)} of {UPLOAD_FLOOD} concurrent uploads accepted (cap {cap})"
        )
    if len(accepted) + len(refused) != UPLOAD_FLOOD:
        others = [str(a) for a in answers if a not in accepted and a not in refused]
        problems.append(f"attacker: answers neither 200 nor 429 concurrent_uploads: {others}")
    assert_isolated(outcome, rss_bound_mb=UPLOAD_FLOOD_RSS_BOUND_MB, attacker_problems=problems)
