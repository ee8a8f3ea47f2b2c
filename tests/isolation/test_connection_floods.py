"""Connection floods over every long-lived transport: past a cap, a clear refusal.

Generated from the routes: every WebSocket route and every streaming HTTP
route (an async view: Server-Sent Events) is flooded with the credential it
takes, from one address. A share key is held to MAX_CONNECTIONS_PER_SHARE_KEY,
an address to MAX_CONNECTIONS_PER_ADDRESS, a signed-in user to
MAX_CONNECTIONS_PER_USER. Past the cap a WebSocket gets the error frame
``too_many_connections`` naming the ``limit`` and close 4429; a stream gets
HTTP 429 with the same JSON. The neighbour's probe, from another address and
with its own key, connects throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
from dataclasses import dataclass
from typing import Any

import pytest
import websockets

from documents.consumers import DocumentConsumer
from streams.consumers import FeedPublishConsumer, FeedViewerConsumer
from streams.models import FeedKind
from streams.services import feed_create
from tests.conftest import session_cookie_for
from tests.isolation.conftest import CAPS, assert_isolated
from tests.isolation.harness import ATTACKER_ADDRESS, first_frame, ws_connect
from tests.security.routes import Route, consumer_of, http_object_routes, websocket_object_routes

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

RSS_BOUND_MB = 60
OVER = 5  # connections tried past each cap
# What each WebSocket consumer is opened with; a new one must be taught here.
CREDENTIALS = {FeedViewerConsumer: "key", DocumentConsumer: "key", FeedPublishConsumer: "token"}
WEBSOCKET_ROUTES = websocket_object_routes()
# Streaming HTTP routes are the async views (Server-Sent Events), opened with a key.
STREAM_ROUTES = [r for r in http_object_routes() if asyncio.iscoroutinefunction(r.callback)]
CLOSE_TOO_MANY_CONNECTIONS = 4429


def credential_of(route: Route) -> str:
    if route in STREAM_ROUTES:
        return "key"
    consumer = consumer_of(route)
    if consumer not in CREDENTIALS:
        raise LookupError(f"{route}: teach tests/isolation CREDENTIALS what {consumer} takes")
    return CREDENTIALS[consumer]


def test_every_long_lived_route_is_flooded():
    assert WEBSOCKET_ROUTES and STREAM_ROUTES
    for route in WEBSOCKET_ROUTES + STREAM_ROUTES:
        credential_of(route)


@dataclass
class Opened:
    accepted: bool
    refusal: dict | None  # the error frame, or the JSON body of the HTTP answer
    code: int | None  # the WebSocket close code, or the HTTP status
    handle: Any  # to close when done

    def __str__(self) -> str:
        return "accepted" if self.accepted else f"{self.code} {self.refusal}"


async def open_websocket(url: str, *, headers: dict[str, str], publish: bool) -> Opened:
    try:
        socket = await ws_connect(url, source=ATTACKER_ADDRESS, headers=headers)
    except websockets.InvalidStatus as exc:
        return Opened(False, None, exc.response.status_code, None)
    try:
        if publish:  # a publish socket says nothing until it is sent something
            # A refused socket may be closed already; its error frame is still there to read.
            with contextlib.suppress(websockets.ConnectionClosed):
                await socket.send(json.dumps({"value": 1}))
        frame = await first_frame(socket)
    except (websockets.ConnectionClosed, TimeoutError):
        return Opened(False, None, socket.close_code, socket)
    if frame.get("type") != "error":
        return Opened(True, None, None, socket)
    with contextlib.suppress(websockets.ConnectionClosed, TimeoutError):
        async with asyncio.timeout(5):
            while True:
                await socket.recv()
    return Opened(False, frame, socket.close_code, socket)


def open_stream(port: int, path: str, headers: dict[str, str]) -> Opened:
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=10, source_address=(ATTACKER_ADDRESS, 0)
    )
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    if response.status == 200:
        response.read1(64)  # "retry: 2000": the stream is open
        return Opened(True, None, 200, connection)
    body = response.read()
    try:
        refusal = json.loads(body)
    except ValueError:
        refusal = {"body": body[:100].decode(errors="replace")}
    return Opened(False, refusal, response.status, connection)


async def close_all(opened: list[Opened]) -> None:
    for item in opened:
        if isinstance(item.handle, http.client.HTTPConnection):
            item.handle.close()
        elif item.handle is not None:
            await item.handle.close()


def judge(opened: list[Opened], *, cap: int, limit: str, stream: bool) -> list[str]:
    """The first ``cap`` open; every later one is refused, naming ``limit``."""
    problems = []
    first, rest = opened[:cap], opened[cap:]
    refused_early = [str(o) for o in first if not o.accepted]
    if refused_early:
        problems.append(
            f"attacker: {len(refused_early)} of the first {cap} refused: {refused_early[:3]}"
        )
    expected_code = 429 if stream else CLOSE_TOO_MANY_CONNECTIONS
    wrong = [
        str(o)
        for o in rest
        if o.accepted
        or o.code != expected_code
        or (o.refusal or {}).get("error") != "too_many_connections"
        or (o.refusal or {}).get("limit") != limit
    ]
    if wrong:
        accepted = sum(o.accepted for o in rest)
        problems.append(
            f"attacker: {accepted} of {len(rest)} connections past the cap of {cap} accepted; "
            f"{len(wrong)} not refused with {expected_code} too_many_connections/{limit}: {wrong[:2]}"
        )
    return problems


def flood_plan(route: Route, attacker) -> tuple[int, str, str, dict[str, str]]:
    """cap, limit, path and headers of a flood of ``route`` with the credential it takes."""
    objects = {"feed": attacker.feed, "document": attacker.document}
    path = route.fill(objects)
    if credential_of(route) == "token":
        # A token is no share key: the address's cap is what holds it.
        return (
            CAPS["MAX_CONNECTIONS_PER_ADDRESS"],
            "connections_per_address",
            path,
            {"Authorization": f"Bearer {attacker.token}"},
        )
    key = route.subject(objects).share_key
    return (
        CAPS["MAX_CONNECTIONS_PER_SHARE_KEY"],
        "connections_per_share_key",
        f"{path}?key={key}",
        {},
    )


async def flood(server, plans: list[tuple[str, dict[str, str], bool, bool]]) -> list[Opened]:
    """Open one connection per plan (path, headers, stream?, publish?), one after another."""
    opened = []
    for path, headers, stream, publish in plans:
        if stream:
            opened.append(await asyncio.to_thread(open_stream, server.port, path, headers))
        else:
            opened.append(
                await open_websocket(f"{server.ws}{path}", headers=headers, publish=publish)
            )
    await asyncio.sleep(1.0)  # the flood stands while the probe keeps connecting
    return opened


def run_flood(probed, server, label, plans, *, cap, limit, stream):
    async def attack() -> list[Opened]:
        opened = await flood(server, plans)
        await close_all(opened)
        return opened

    outcome = probed(attack, label=label)
    opened = outcome.result
    print(
        f"attacker: {sum(o.accepted for o in opened)} of {len(opened)} accepted; past the cap: {[str(o) for o in opened[cap:]][:2]}"
    )
    problems = judge(opened, cap=cap, limit=limit, stream=stream)
    assert_isolated(outcome, rss_bound_mb=RSS_BOUND_MB, attacker_problems=problems)


@pytest.mark.parametrize("route", WEBSOCKET_ROUTES + STREAM_ROUTES, ids=str)
def test_flood_of_one_credential_is_capped_and_neighbour_connects(route, server, attacker, probed):
    cap, limit, path, headers = flood_plan(route, attacker)
    stream = route in STREAM_ROUTES
    publish = credential_of(route) == "token"
    plans = [(path, headers, stream, publish)] * (cap + OVER)
    run_flood(
        probed, server, f"flood of {route} ({limit})", plans, cap=cap, limit=limit, stream=stream
    )


@pytest.mark.parametrize("transport", ["websocket", "sse"])
def test_flood_from_one_address_over_several_keys_is_capped(
    transport, server, world, attacker, probed
):
    cap = CAPS["MAX_CONNECTIONS_PER_ADDRESS"]
    per_key = CAPS["MAX_CONNECTIONS_PER_SHARE_KEY"] - 1
    feeds = [attacker.feed] + [
        feed_create(tenant=world.acme, name=f"spare {n}", kind=FeedKind.BINARY, share=True)
        for n in range(3)
    ]
    if transport == "websocket":
        targets = [f"/ws/feeds/{f.uuid}/?key={f.share_key}" for f in feeds[:2]]
        document = attacker.document
        targets.append(f"/ws/documents/{document.uuid}/?key={document.share_key}")
    else:
        targets = [f"/feeds/{f.uuid}/events/?key={f.share_key}" for f in feeds[:3]]
    paths = [path for path in targets for _ in range(per_key)][: cap + OVER]
    assert len(paths) == cap + OVER  # no key reaches its own cap
    plans = [(path, {}, transport == "sse", False) for path in paths]
    run_flood(
        probed,
        server,
        f"flood from one address over {len(targets)} keys ({transport})",
        plans,
        cap=cap,
        limit="connections_per_address",
        stream=transport == "sse",
    )


@pytest.mark.parametrize("transport", ["websocket", "sse"])
def test_flood_of_one_signed_in_user_is_capped(transport, server, world, attacker, probed):
    cap = CAPS["MAX_CONNECTIONS_PER_USER"]
    headers = {"Cookie": session_cookie_for(world.alice), "Origin": server.http}
    if transport == "websocket":
        path = f"/ws/feeds/{attacker.feed.uuid}/"
    else:
        path = f"/feeds/{attacker.feed.uuid}/events/"
    plans = [(path, headers, transport == "sse", False)] * (cap + OVER)
    run_flood(
        probed,
        server,
        f"flood of one signed-in user ({transport})",
        plans,
        cap=cap,
        limit="connections_per_user",
        stream=transport == "sse",
    )
