"""The Origin check against the real server: scheme, host and port of the page must be the site's."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from tests.conftest import session_cookie_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_session_socket_opens_only_from_the_sites_own_port_and_scheme(daphne, world, acme_feed):
    url = f"{daphne.ws}/ws/feeds/{acme_feed.feed.uuid}/"
    cookie = session_cookie_for(world.alice)

    async def opens(origin: str) -> bool:
        try:
            async with websockets.connect(
                url, origin=origin, additional_headers={"Cookie": cookie}
            ) as socket:
                return json.loads(await socket.recv())["type"] == "hello"
        except websockets.InvalidStatus as refused:
            assert refused.response.status_code == 403
            return False

    other_port = f"http://127.0.0.1:{daphne.port + 1}"
    other_scheme = f"https://127.0.0.1:{daphne.port}"

    async def scenario() -> list[bool]:
        return [await opens(origin) for origin in (daphne.http, other_port, other_scheme)]

    assert asyncio.run(scenario()) == [True, False, False]
