"""Poison values: finite numbers whose statistics overflow, on both publish routes.

The attacker publishes ``{"values": [1e200, -1e200]}``, ``1e308`` then
``-1e308`` on its own numeric feed, one frame every 2 ms, while the
neighbour publishes on its feed. The fixed server refuses the poison alone
(``bad_value``), keeps the attacker's feed usable and never answers the
neighbour ``unavailable``.
"""

from __future__ import annotations

import asyncio
import json
import math
import time

import pytest
import websockets

from streams.models import Feed
from tests.isolation.conftest import assert_isolated
from tests.isolation.harness import ATTACKER_ADDRESS, http_request, ws_connect
from tests.security.routes import http_routes, websocket_object_routes

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

POISON = [{"values": [1e200, -1e200]}, {"value": 1e308}, {"value": -1e308}]
ATTACK_SECONDS = 3.0
RSS_BOUND_MB = 50
PUBLISH_ROUTES = {
    "ws": "/ws/feeds/<uuid:feed_uuid>/publish/",
    "http": "/api/feeds/<uuid:feed_uuid>/samples/",
}


def test_both_publish_routes_exist():
    # The poison attack addresses the publish routes by name: fail if one moves.
    routes = {str(r).lstrip("/") for r in [*http_routes(), *websocket_object_routes()]}
    assert {path.lstrip("/") for path in PUBLISH_ROUTES.values()} <= routes


def judge(answers: list[tuple[dict, dict | int]]) -> list[str]:
    """Problems with the answers to poison frames: (frame, answer) pairs."""
    problems = []
    codes: dict[str, int] = {}
    for _, answer in answers:
        codes[answer_kind(answer)] = codes.get(answer_kind(answer), 0) + 1
    wrong = {k: n for k, n in codes.items() if k not in ("bad_value", "ack")}
    if wrong:
        problems.append(f"attacker: poison answered {codes} (only bad_value or ack allowed)")
    pairs_accepted = [
        frame
        for frame, answer in answers
        if "values" in frame and answer_kind(answer) != "bad_value"
    ]
    if pairs_accepted:
        problems.append(
            f"attacker: {len(pairs_accepted)} frames of [1e200, -1e200] were not refused bad_value"
        )
    if codes.get("bad_value", 0) == 0:
        problems.append(f"attacker: no poison frame was refused bad_value ({codes})")
    return problems


def answer_kind(answer: dict | int) -> str:
    if isinstance(answer, dict):
        return str(answer.get("error") or answer.get("type"))
    return str(answer)


def non_finite_stats(feed_pk: int) -> dict:
    stats = Feed.objects.get(pk=feed_pk).stats
    return {k: v for k, v in stats.items() if isinstance(v, float) and not math.isfinite(v)}


def test_poison_on_the_publish_socket_is_refused_alone_and_neighbour_commits(
    server, attacker, probed
):
    url = f"{server.ws}/ws/feeds/{attacker.feed.uuid}/publish/"
    headers = {"Authorization": f"Bearer {attacker.token}"}

    async def attack() -> dict:
        socket = await ws_connect(url, source=ATTACKER_ADDRESS, headers=headers)
        frames: list[dict] = []
        answers: list[dict] = []
        progress = asyncio.Event()

        async def read() -> None:
            try:
                async for message in socket:
                    answers.append(json.loads(message))
                    progress.set()
            except websockets.ConnectionClosed:
                pass
            progress.set()

        async def all_answered() -> None:
            while len(answers) < len(frames) and socket.close_code is None:
                progress.clear()
                await progress.wait()

        reader = asyncio.create_task(read())
        deadline = time.monotonic() + ATTACK_SECONDS
        try:
            while time.monotonic() < deadline:
                frame = POISON[len(frames) % len(POISON)]
                await socket.send(json.dumps(frame))
                frames.append(frame)
                await asyncio.sleep(0.002)
            async with asyncio.timeout(20):
                await all_answered()
            # The feed still takes a valid value.
            await socket.send(json.dumps({"value": 1}))
            frames.append({"value": 1})
            async with asyncio.timeout(10):
                await all_answered()
        except (websockets.ConnectionClosed, TimeoutError):
            pass
        finally:
            await socket.close()
            await reader
        return {"frames": frames, "answers": answers, "close": socket.close_code}

    outcome = probed(attack, label="poison values, publish socket")
    result = outcome.result
    frames, answers = result["frames"], result["answers"]
    poison = list(zip(frames[:-1], answers[: len(frames) - 1], strict=False))
    problems = judge(poison)
    if len(answers) < len(frames):
        problems.append(
            f"attacker: {len(answers)} answers for {len(frames)} frames (socket closed "
            f"{result['close']})"
        )
    elif answer_kind(answers[len(frames) - 1]) != "ack":
        problems.append(f"attacker: {{'value': 1}} after the poison answered {answers[-1]}")
    infinite = non_finite_stats(attacker.feed.pk)
    if infinite:
        problems.append(f"attacker: the feed's statistics are not finite: {infinite}")
    print(f"attacker: {len(frames) - 1} poison frames answered {summarise(poison)}")
    assert_isolated(outcome, rss_bound_mb=RSS_BOUND_MB, attacker_problems=problems)


def test_poison_over_http_is_refused_400_and_neighbour_commits(server, attacker, probed):
    path = f"/api/feeds/{attacker.feed.uuid}/samples/"
    headers = {"Authorization": f"Bearer {attacker.token}", "Content-Type": "application/json"}

    def post(frame: dict) -> tuple[dict, dict | int]:
        answer = http_request(
            server, "POST", path, body=json.dumps(frame).encode(), headers=headers, timeout=30
        )
        body = answer.json()
        if answer.status == 200 and isinstance(body, dict):
            return frame, body
        if answer.status == 400 and isinstance(body, dict):
            return frame, body
        return frame, answer.status

    async def attack() -> dict:
        answers = []
        deadline = time.monotonic() + ATTACK_SECONDS
        while time.monotonic() < deadline:
            answers.append(await asyncio.to_thread(post, POISON[len(answers) % len(POISON)]))
        after = await asyncio.to_thread(post, {"value": 1})
        return {"answers": answers, "after": after[1]}

    outcome = probed(attack, label="poison values, HTTP publish")
    answers = outcome.result["answers"]
    problems = judge(answers)
    if answer_kind(outcome.result["after"]) != "ack":
        problems.append(
            f"attacker: {{'value': 1}} after the poison answered {outcome.result['after']}"
        )
    infinite = non_finite_stats(attacker.feed.pk)
    if infinite:
        problems.append(f"attacker: the feed's statistics are not finite: {infinite}")
    print(f"attacker: {len(answers)} poison POSTs answered {summarise(answers)}")
    assert_isolated(outcome, rss_bound_mb=RSS_BOUND_MB, attacker_problems=problems)


def summarise(answers: list[tuple[dict, dict | int]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, answer in answers:
        counts[answer_kind(answer)] = counts.get(answer_kind(answer), 0) + 1
    return counts
