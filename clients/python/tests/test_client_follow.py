"""FeedStream against a scripted server: resume, duplicates, gaps, resyncs, close codes."""

from __future__ import annotations

import asyncio
import json

import pytest
from conftest import FakeServer, hello, sample
from streamsite_client import (
    AccessDenied,
    AccessRevoked,
    Backoff,
    BadRequest,
    Client,
    Disconnected,
    GaveUp,
    ResyncError,
    TooManyConnections,
)

FAST = Backoff(initial=0.01, maximum=0.05)


async def take(stream, count: int) -> list:
    got = []
    async with asyncio.timeout(10):
        async for item in stream:
            got.append(item)
            if len(got) == count:
                break
    return got


async def test_reconnects_with_since_and_skips_what_it_already_delivered(fake: FakeServer):
    async def script(socket, index):
        if index == 0:
            await socket.send(hello(5))
            await socket.send(sample(6))
            await socket.send(sample(7))
            await socket.close(1001)
        else:
            await socket.send(hello(9))
            for seq in (7, 8, 9):  # 7 again: the server replays after since
                await socket.send(sample(seq))
            await socket.wait_closed()

    fake.script = script
    async with Client(fake.url, key="K", backoff=FAST).follow("f") as stream:
        got = await take(stream, 4)
    assert [s.seq for s in got] == [6, 7, 8, 9]
    assert "since" not in fake.query(0) and fake.query(0)["key"] == "K"
    assert fake.query(1) == {"key": "K", "since": "7"}


@pytest.mark.parametrize(
    ("code", "error"),
    [(4403, AccessRevoked), (4429, TooManyConnections), (4400, BadRequest)],
)
async def test_close_codes_that_mean_stop_raise_their_error_and_do_not_reconnect(
    fake: FakeServer, code, error
):
    async def script(socket, index):
        await socket.send(hello(1))
        await socket.send(json.dumps({"type": "error", "error": "x", "message": "why"}))
        await socket.close(code)

    fake.script = script
    with pytest.raises(error) as caught:
        await take(Client(fake.url, backoff=FAST).follow("f"), 5)
    assert caught.value.code == code and "why" in str(caught.value)
    await asyncio.sleep(0.2)
    assert len(fake.paths) == 1


async def test_unavailable_backs_off_longer_than_an_ordinary_drop(fake: FakeServer):
    async def script(socket, index):
        await socket.send(hello(1))
        await socket.close(1011 if index == 0 else 1001)

    fake.script = script
    backoff = Backoff(initial=0.01, maximum=1.0, jitter=0.0, slow_start=4)
    events = await take(Client(fake.url, backoff=backoff).follow("f").events(), 5)
    drops = [e for e in events if isinstance(e, Disconnected)]
    assert [d.code for d in drops] == [1011, 1001]
    assert drops[0].retry_in == pytest.approx(0.08) and drops[1].retry_in == pytest.approx(0.01)


async def test_a_gap_is_filled_by_reconnecting_with_since(fake: FakeServer):
    async def script(socket, index):
        if index == 0:
            await socket.send(hello(0))
            await socket.send(sample(1))
            await socket.send(sample(3))  # 2 went missing
        else:
            await socket.send(hello(3))
            await socket.send(sample(2))
            await socket.send(sample(3))
        await socket.wait_closed()

    fake.script = script
    got = await take(Client(fake.url, backoff=FAST).follow("f"), 3)
    assert [s.seq for s in got] == [1, 2, 3]
    assert fake.query(1)["since"] == "1"


async def test_a_gap_that_reconnecting_cannot_fill_raises_resync_error(fake: FakeServer):
    async def script(socket, index):
        await socket.send(hello(0))
        await socket.send(sample(1) if index == 0 else sample(3))
        if index == 0:
            await socket.send(sample(3))
        await socket.wait_closed()

    fake.script = script
    with pytest.raises(ResyncError) as caught:
        await take(Client(fake.url, backoff=FAST).follow("f"), 3)
    assert (caught.value.resync.since, caught.value.resync.resume_seq) == (1, 2)


async def test_resync_raises_or_goes_on_with_on_resync(fake: FakeServer):
    async def script(socket, index):
        await socket.send(
            json.dumps({"type": "resync", "reason": "samples no longer kept", "since": 3,
                        "oldest_seq": 50})
        )  # fmt: skip
        await socket.send(hello(80))
        await socket.send(sample(81))
        await socket.wait_closed()

    fake.script = script
    with pytest.raises(ResyncError) as caught:
        await take(Client(fake.url, backoff=FAST).follow("f", since=3), 1)
    resync = caught.value.resync
    assert (resync.since, resync.resume_seq, resync.oldest_seq) == (3, 80, 50)

    seen = []
    stream = Client(fake.url, backoff=FAST).follow("f", since=3, on_resync=seen.append)
    got = await take(stream, 1)
    assert [s.seq for s in got] == [81] and seen[0].resume_seq == 80
    assert stream.last_seq == 81


async def test_a_refused_handshake_raises_access_denied_at_once(fake: FakeServer):
    fake.refuse_with = 403
    with pytest.raises(AccessDenied):
        await take(Client(fake.url, backoff=FAST).follow("f"), 1)
    assert len(fake.paths) == 1


async def test_other_http_answers_are_retried_until_max_attempts(fake: FakeServer):
    fake.refuse_with = 502
    backoff = Backoff(initial=0.01, maximum=0.02, max_attempts=3)
    with pytest.raises(GaveUp) as caught:
        await take(Client(fake.url, backoff=backoff).follow("f"), 1)
    assert caught.value.attempts == 3 and len(fake.paths) == 3


async def test_a_session_cookie_goes_with_the_servers_own_origin(fake: FakeServer):
    seen = []

    async def script(socket, index):
        seen.append(socket.request.headers)
        await socket.send(hello(0))
        await socket.send(sample(1))
        await socket.wait_closed()

    fake.script = script
    await take(Client(fake.url, session_cookie="abc").follow("f"), 1)
    assert seen[0]["Cookie"] == "sessionid=abc"
    assert seen[0]["Origin"] == fake.url
