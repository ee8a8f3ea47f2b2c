"""Deactivating a user closes their WebSocket and their SSE stream within a second (real server)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import websockets

from tests.conftest import session_cookie_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


async def sse_lines(daphne, path: str, cookie: str):
    reader, writer = await asyncio.open_connection("127.0.0.1", daphne.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n\r\n".encode())
    await writer.drain()
    return reader, writer


async def until_data(reader, wanted: str, seconds: float) -> dict:
    """The first `data:` event whose frame has type ``wanted``."""
    async with asyncio.timeout(seconds):
        while True:
            line = (await reader.readline()).decode()
            if not line:
                raise EOFError("stream ended")
            if line.startswith("data: ") and json.loads(line[6:])["type"] == wanted:
                return json.loads(line[6:])


def test_deactivated_users_socket_and_stream_close_within_a_second(daphne, world, acme_feed):
    feed = acme_feed.feed
    bob, alice = session_cookie_for(world.bob), session_cookie_for(world.alice)

    def deactivate() -> None:
        world.bob.is_active = False
        world.bob.save()

    async def scenario():
        ws = await websockets.connect(
            f"{daphne.ws}/ws/feeds/{feed.uuid}/",
            origin=daphne.http,
            additional_headers={"Cookie": bob},
        )
        neighbour = await websockets.connect(
            f"{daphne.ws}/ws/feeds/{feed.uuid}/",
            origin=daphne.http,
            additional_headers={"Cookie": alice},
        )
        reader, writer = await sse_lines(daphne, f"/feeds/{feed.uuid}/events/", bob)
        await until_data(reader, "hello", 10)
        assert json.loads(await ws.recv())["type"] == "hello"
        await asyncio.to_thread(deactivate)
        started = time.monotonic()
        async with asyncio.timeout(5):
            while True:  # presence frames may come first
                try:
                    await ws.recv()
                except websockets.ConnectionClosed as closed:
                    ws_code, ws_after = closed.rcvd.code, time.monotonic() - started
                    break
        event = await until_data(reader, "error", 5)
        sse_after = time.monotonic() - started
        async with asyncio.timeout(5):  # the response ends after the event: its last chunk
            while (line := await reader.readline()) not in (b"0\r\n", b""):
                pass
        ended = line == b"0\r\n"
        writer.close()
        still_open = neighbour.state == websockets.State.OPEN
        await neighbour.close()
        return ws_code, ws_after, event, sse_after, ended, still_open

    ws_code, ws_after, event, sse_after, ended, still_open = asyncio.run(scenario())
    print(f"\nsocket closed after {ws_after:.2f} s, stream after {sse_after:.2f} s")
    assert ws_code == 4403 and ws_after < 1.0
    assert event["error"] == "revoked" and sse_after < 1.0 and ended
    assert still_open
