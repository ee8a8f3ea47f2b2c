"""Connection caps per user, per share key and per client address, over WebSockets and
Server-Sent Events alike, against the real server.

Over a cap, a WebSocket gets ``too_many_connections`` naming the limit and
close 4429; an event stream gets HTTP 429 with the same JSON. A neighbour
(another user, another key, another address) connects meanwhile, and a
closed connection frees its slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import random
from dataclasses import dataclass

import pytest
import websockets
from django.contrib.auth import get_user_model

from tenants.models import Role
from tenants.services import membership_set
from tests.conftest import Daphne, password_hash, session_cookie_for
from tests.security.test_hostile_frames import closed_with

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CAP = 2
LIMITS = {
    "user": ("MAX_CONNECTIONS_PER_USER", "connections_per_user"),
    "share_key": ("MAX_CONNECTIONS_PER_SHARE_KEY", "connections_per_share_key"),
    "address": ("MAX_CONNECTIONS_PER_ADDRESS", "connections_per_address"),
}


def random_address() -> str:
    # Any 127/8 address reaches the loopback server; counts live in Redis, which
    # other tests (and parallel runs) share: an address nobody else uses.
    return f"127.{random.randrange(1, 255)}.{random.randrange(1, 255)}.{random.randrange(2, 255)}"


@pytest.fixture(scope="module", params=list(LIMITS))
def capped(request, django_db_setup, django_db_blocker):
    """A server with one cap (per user, per share key or per address) at CAP."""
    setting, _ = LIMITS[request.param]
    server = Daphne(**{setting: str(CAP)}).start()
    yield request.param, server
    server.stop()


@dataclass
class Credential:
    """How a client opens a feed: its query, its headers, its source address."""

    feed: object
    query: str = ""
    cookie: str | None = None
    address: str = "127.0.0.1"


def new_member(world):
    user = get_user_model().objects.create(
        pk=random.randrange(10**9, 2 * 10**9),
        username=f"u{random.randrange(10**9)}",
        password=password_hash(),
    )
    membership_set(tenant=world.acme, user=user, role=Role.VIEWER)
    return user


class WebSocketClient:
    def __init__(self, server: Daphne) -> None:
        self.server = server

    async def open(self, who: Credential):
        """The open socket after its hello, or the refusal frame and close code."""
        url = f"{self.server.ws}/ws/feeds/{who.feed.uuid}/{who.query}"
        headers = {"Origin": self.server.http}
        if who.cookie:
            headers["Cookie"] = who.cookie
        socket = await websockets.connect(
            url, additional_headers=headers, local_addr=(who.address, 0)
        )
        first = json.loads(await socket.recv())
        if first["type"] == "hello":
            return socket, None
        return None, (first, await closed_with(socket))

    async def close(self, socket) -> None:
        await socket.close()


class EventStreamClient:
    def __init__(self, server: Daphne) -> None:
        self.server = server

    async def open(self, who: Credential):
        """The open stream (after its hello event), or the 429 body and status."""
        return await asyncio.to_thread(self._open, who)

    def _open(self, who: Credential):
        connection = http.client.HTTPConnection(
            "127.0.0.1", self.server.port, timeout=10, source_address=(who.address, 0)
        )
        headers = {"Cookie": who.cookie} if who.cookie else {}
        connection.request("GET", f"/feeds/{who.feed.uuid}/events/{who.query}", headers=headers)
        response = connection.getresponse()
        if response.status != 200:
            body = json.loads(response.read())
            connection.close()
            return None, (body, response.status)
        line = response.readline()
        while not line.startswith(b"data: "):
            line = response.readline()
        assert json.loads(line[len(b"data: ") :])["type"] == "hello"
        return connection, None

    async def close(self, connection) -> None:
        connection.close()


TRANSPORTS = {"websocket": WebSocketClient, "events": EventStreamClient}


def credentials(kind: str, world, acme_feed, globex_feed) -> tuple[Credential, Credential]:
    """The capped credential, and a neighbour's that must not be affected."""
    feed, other = acme_feed.feed, globex_feed.feed
    if kind == "user":
        capped = Credential(feed, cookie=session_cookie_for(new_member(world)))
        return capped, Credential(feed, cookie=session_cookie_for(new_member(world)))
    if kind == "share_key":
        return Credential(feed, f"?key={feed.share_key}"), Credential(
            other, f"?key={other.share_key}"
        )
    address = random_address()
    return (
        Credential(feed, f"?key={feed.share_key}", address=address),
        Credential(feed, f"?key={feed.share_key}", address=random_address()),
    )


@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_a_connection_over_its_cap_is_refused_naming_it_and_the_neighbour_connects(
    capped, transport, world, acme_feed, globex_feed
):
    kind, server = capped
    _, limit = LIMITS[kind]
    client = TRANSPORTS[transport](server)
    mine, neighbours = credentials(kind, world, acme_feed, globex_feed)
    if kind != "address":
        # Each connection from an address of its own, so that only the cap under test counts.
        mine.address = neighbours.address = random_address()

    async def scenario():
        held = []
        try:
            for _ in range(CAP):
                connection, refusal = await client.open(mine)
                assert refusal is None
                held.append(connection)
            _, refusal = await client.open(mine)
            neighbour, neighbour_refusal = await client.open(neighbours)
            assert neighbour_refusal is None
            await client.close(neighbour)
            await client.close(held.pop())
            async with asyncio.timeout(10):
                while True:  # the slot is freed once the server has seen the close
                    again, still_refused = await client.open(mine)
                    if still_refused is None:
                        held.append(again)
                        break
                    await asyncio.sleep(0.1)
            return refusal
        finally:
            for connection in held:
                with contextlib.suppress(Exception):
                    await client.close(connection)

    frame, code = asyncio.run(scenario())
    assert (frame["type"], frame["error"], frame["limit"]) == (
        "error",
        "too_many_connections",
        limit,
    )
    assert f"at most {CAP}" in frame["message"]
    assert code == (4429 if transport == "websocket" else 429)
