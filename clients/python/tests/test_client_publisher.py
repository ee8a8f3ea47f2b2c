"""Publisher against a scripted server: batching, ids, resends, per-sample errors, close codes."""

from __future__ import annotations

import asyncio
import json

import pytest
from conftest import FakeServer
from streamsite_client import (
    AccessRevoked,
    Backoff,
    Client,
    PublishError,
    PublishFailed,
)

FAST = Backoff(initial=0.01, maximum=0.05)


def ack(seq: int, **extra) -> str:
    return json.dumps({"type": "ack", "seq": seq, **extra})


def error(code: str) -> str:
    return json.dumps({"type": "error", "error": code, "message": f"{code}!"})


def acking(fake: FakeServer, delay: float = 0.0):
    """A server that stores every sample (seq after seq) and acks every frame after ``delay``."""
    state = {"seq": 0}

    async def script(socket, index):
        while True:
            frame = await fake.recv(socket)
            state["seq"] += len(frame.get("values", [None]))
            await asyncio.sleep(delay)
            await socket.send(ack(state["seq"]))

    return script


async def test_every_sample_has_a_unique_id_and_queued_samples_share_a_values_frame(fake):
    fake.script = acking(fake, delay=0.2)
    async with Client(fake.url, token="T").publisher("f", window=1) as publisher:
        futures = [await publisher.send(1)]
        await asyncio.sleep(0.05)  # sent alone; its ack takes a while: the window is full
        futures += [await publisher.send(v) for v in (0, 1, 1)]
        await publisher.flush()
    frames = fake.received[0]
    assert frames[0]["value"] == 1 and len(frames) == 2
    assert frames[1]["values"] == [0, 1, 1]
    ids = [frames[0]["id"], *frames[1]["ids"]]
    assert len(set(ids)) == 4 and all(len(i) <= 64 for i in ids)
    acks = [f.result() for f in futures]
    assert [a.seq for a in acks] == [1, 2, 3, 4] and [a.id for a in acks] == ids


async def test_a_sample_with_its_own_ts_goes_alone_with_its_id(fake):
    fake.script = acking(fake)
    async with Client(fake.url, token="T").publisher("f", id_prefix="p") as publisher:
        await publisher.send(0.5)
        await publisher.send(2.5, ts=123.0, id="mine")
        await publisher.send(3.5)
    assert fake.received[0] == [
        {"value": 0.5, "id": "p-1"},
        {"value": 2.5, "ts": 123.0, "id": "mine"},
        {"value": 3.5, "id": "p-2"},
    ]


async def test_unacknowledged_frames_are_resent_unchanged_after_a_drop(fake):
    async def script(socket, index):
        if index == 0:
            for _ in range(3):
                await fake.recv(socket)
            await socket.send(ack(1))
            await socket.close(1012)  # the second and third are not acknowledged
        else:
            await fake.recv(socket)
            await socket.send(ack(2, duplicate=True))  # it had been stored after all
            await fake.recv(socket)
            await socket.send(ack(3))
            await socket.wait_closed()

    fake.script = script
    async with Client(fake.url, token="T", backoff=FAST).publisher("f", window=3) as publisher:
        futures = []
        for value in (10, 20, 30):
            futures.append(await publisher.send(value))
            await asyncio.sleep(0.01)  # one frame each
        await publisher.flush()
    first, second = fake.received
    assert second == first[1:]  # same values, same ids
    acks = [f.result() for f in futures]
    assert [(a.seq, a.duplicate) for a in acks] == [(1, False), (2, True), (3, False)]
    assert publisher.reconnects == 1


async def test_a_batch_refused_for_one_bad_value_is_retried_one_by_one(fake):
    state = {"seq": 0}

    async def script(socket, index):
        while True:
            frame = await fake.recv(socket)
            values = frame.get("values", [frame.get("value")])
            if 7 in values:
                await socket.send(error("bad_value"))
            else:
                state["seq"] += len(values)
                await socket.send(ack(state["seq"]))

    fake.script = script
    async with Client(fake.url, token="T").publisher("f") as publisher:
        futures = [await publisher.send(v) for v in (1, 7, 0)]
        with pytest.raises(PublishFailed) as caught:
            await publisher.flush()
        await publisher.flush()  # reported once
    assert [e.code for e in caught.value.errors] == ["bad_value"]
    assert isinstance(futures[1].exception(), PublishError)
    assert [futures[0].result().seq, futures[2].result().seq] == [1, 2]


@pytest.mark.parametrize("code", ["quota_exceeded", "rate_limited"])
async def test_refusals_fail_their_own_sample_only(fake, code):
    state = {"seq": 0}

    async def script(socket, index):
        while True:
            frame = await fake.recv(socket)
            if frame.get("value") == 2:
                await socket.send(error(code))
            else:
                state["seq"] += 1
                await socket.send(ack(state["seq"]))

    fake.script = script
    async with Client(fake.url, token="T").publisher("f") as publisher:
        futures = []
        for value in (1, 2, 3):
            futures.append(await publisher.send(value))
            await asyncio.sleep(0.01)
        await publisher.flush(raise_errors=False)
    assert futures[1].exception().code == code
    assert [futures[0].result().seq, futures[2].result().seq] == [1, 2]


async def test_unavailable_reconnects_and_resends(fake):
    async def script(socket, index):
        await fake.recv(socket)
        await socket.send(error("unavailable") if index == 0 else ack(1))
        await socket.wait_closed()

    fake.script = script
    async with Client(fake.url, token="T", backoff=FAST).publisher("f") as publisher:
        future = await publisher.send(5)
        await publisher.flush()
    assert future.result().seq == 1
    assert fake.received[1] == fake.received[0]


async def test_a_revoked_token_fails_everything_pending_and_stops(fake):
    async def script(socket, index):
        await fake.recv(socket)
        await socket.send(json.dumps({"type": "error", "error": "revoked", "message": "gone"}))
        await socket.close(4403)

    fake.script = script
    publisher = Client(fake.url, token="T", backoff=FAST).publisher("f")
    await publisher.start()
    future = await publisher.send(1)
    with pytest.raises(AccessRevoked):
        await publisher.flush()
    assert isinstance(future.exception(), AccessRevoked)
    with pytest.raises(AccessRevoked):
        await publisher.send(2)
    await publisher.abort()
    await asyncio.sleep(0.1)
    assert len(fake.paths) == 1


async def test_the_token_goes_as_a_bearer_header(fake):
    seen = []

    async def script(socket, index):
        seen.append(socket.request.headers)
        await acking(fake)(socket, index)

    fake.script = script
    async with Client(fake.url, token="sekrit").publisher("f") as publisher:
        await publisher.send(1)
    assert seen[0]["Authorization"] == "Bearer sekrit"
    assert fake.paths[0] == "/ws/feeds/f/publish/"


async def test_values_must_be_finite_numbers(fake):
    fake.script = acking(fake)
    async with Client(fake.url, token="T").publisher("f") as publisher:
        with pytest.raises(ValueError):
            await publisher.send(float("nan"))
        with pytest.raises(TypeError):
            await publisher.send("1")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            await publisher.send(1, id="x" * 65)
