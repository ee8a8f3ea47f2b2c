"""A scripted WebSocket server on loopback, standing in for Streamsite in unit tests.

Each connection runs the test's ``script(socket, index)``; the server records
every request path (with its query) and every frame it received.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

Script = Callable[[ServerConnection, int], Awaitable[None]]


class FakeServer:
    def __init__(self) -> None:
        self.paths: list[str] = []
        self.received: list[list[Any]] = []  # per connection: decoded frames received
        self.script: Script | None = None
        self.refuse_with: int | None = None  # answer handshakes with this HTTP status
        self.url = ""

    def query(self, index: int) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.paths[index]).query).items()}

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        self.paths.append(request.path)
        if self.refuse_with is not None:
            return connection.respond(self.refuse_with, "refused\n")
        return None

    async def _handler(self, socket: ServerConnection) -> None:
        index = len(self.received)
        self.received.append([])
        assert self.script is not None
        with contextlib.suppress(ConnectionClosed):
            await self.script(socket, index)

    async def recv(self, socket: ServerConnection) -> Any:
        """The next frame from the client (JSON decoded), recorded."""
        message = await socket.recv()
        frame = json.loads(message) if isinstance(message, str) else message
        self.received[-1].append(frame)
        return frame


def hello(last_seq: int) -> str:
    return json.dumps(
        {"type": "hello", "feed": {"uuid": "f", "name": "coin", "kind": "binary"},
         "last_seq": last_seq, "stats": {}, "watching": 1}
    )  # fmt: skip


def sample(seq: int, value: float = 1) -> str:
    return json.dumps({"type": "sample", "seq": seq, "value": value, "ts": 1.0 * seq, "stats": {}})


@pytest.fixture
async def fake() -> AsyncIterator[FakeServer]:
    server = FakeServer()
    async with serve(
        server._handler, "127.0.0.1", 0, process_request=server._process_request
    ) as ws:
        port = next(iter(ws.sockets)).getsockname()[1]
        server.url = f"http://127.0.0.1:{port}"
        yield server
