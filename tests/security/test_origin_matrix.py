"""Cross-site WebSocket hijacking: the session cookie counts only from our own pages.

Generated from streamsite.routing.websocket_urlpatterns. Every route is taken
to be authorised by the session (and by share keys) unless its consumer is in
TOKEN_CONSUMERS, so a new route gets the strict expectations by default.
"""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from streams.consumers import FeedPublishConsumer
from tests.conftest import session_cookie_for
from tests.security.routes import consumer_of, websocket_object_routes
from tests.streams.wsclient import communicator, refused

pytestmark = pytest.mark.django_db(transaction=True)

cookie_for = database_sync_to_async(session_cookie_for)

# Consumers authorised only by a producer token: no session, no share key.
TOKEN_CONSUMERS = {FeedPublishConsumer}

ROUTES = websocket_object_routes()
SESSION_ROUTES = [r for r in ROUTES if consumer_of(r) not in TOKEN_CONSUMERS]
TOKEN_ROUTES = [r for r in ROUTES if consumer_of(r) in TOKEN_CONSUMERS]

# Origins a page that is not ours can make a browser send, and forms a
# careless parser might mistake for ours ("testserver" is the test host).
HOSTILE_ORIGINS = {
    "foreign": b"http://evil.example",
    "null": b"null",
    "missing": None,
    "empty": b"",
    "lookalike-subdomain": b"http://testserver.evil.example",
    "lookalike-https-subdomain": b"https://testserver.evil.example",
    "lookalike-prefix": b"http://evil-testserver",
    "lookalike-suffix": b"http://testserver-evil.example",
    "trailing-dot": b"http://testserver.",
    "scheme-ws": b"ws://testserver",
    "scheme-file": b"file://testserver",
    "scheme-javascript": b"javascript://testserver",
    "scheme-extension": b"chrome-extension://testserver",
    "scheme-relative": b"//testserver",
    "scheme-missing": b"testserver",
    "authority-missing": b"http:testserver",
    "userinfo": b"http://evil.example@testserver",
    "userinfo-backslash": b"http://evil.example\\@testserver",
    "fragment": b"http://evil.example#@testserver",
}
SAME_SITE = b"http://testserver"
PARTNER = b"https://partner.example"


def route_ids(route) -> str:
    return str(route)


async def accepted(comm) -> bool:
    connected, _ = await comm.connect(timeout=5)
    if connected:
        await comm.disconnect()
    return connected


async def allow_origins(obj, origins: str) -> None:
    obj.allowed_origins = origins
    await database_sync_to_async(obj.save)(update_fields=["allowed_origins"])


def test_the_generator_finds_the_routes_we_know():
    # A guard on the generator itself: new routes are welcome, these must stay covered.
    assert {str(r) for r in SESSION_ROUTES} >= {
        "/ws/feeds/<uuid:feed_uuid>/",
        "/ws/documents/<uuid:document_uuid>/",
    }
    assert {str(r) for r in TOKEN_ROUTES} == {"/ws/feeds/<uuid:feed_uuid>/publish/"}


@pytest.mark.parametrize("origin", HOSTILE_ORIGINS.values(), ids=HOSTILE_ORIGINS.keys())
@pytest.mark.parametrize("route", ROUTES, ids=route_ids)
async def test_session_is_refused_from_a_page_that_is_not_ours(route, origin, world, acme_objects):
    comm = communicator(
        route.fill(acme_objects), cookie=await cookie_for(world.alice), origin=origin
    )
    assert await refused(comm)


@pytest.mark.parametrize("route", SESSION_ROUTES, ids=route_ids)
async def test_session_is_accepted_from_our_own_pages(route, world, acme_objects):
    comm = communicator(
        route.fill(acme_objects), cookie=await cookie_for(world.alice), origin=SAME_SITE
    )
    assert await accepted(comm)


@pytest.mark.parametrize("route", ROUTES, ids=route_ids)
async def test_anonymous_client_is_refused(route, acme_objects):
    assert await refused(communicator(route.fill(acme_objects), origin=SAME_SITE))


@pytest.mark.parametrize("route", SESSION_ROUTES, ids=route_ids)
async def test_share_key_works_from_a_script_without_origin(route, acme_objects):
    key = route.subject(acme_objects).share_key
    assert key
    assert await accepted(communicator(f"{route.fill(acme_objects)}?key={key}", origin=None))


@pytest.mark.parametrize("route", SESSION_ROUTES, ids=route_ids)
async def test_share_key_from_a_foreign_page_needs_the_owner_to_list_that_site(route, acme_objects):
    subject = route.subject(acme_objects)
    path = f"{route.fill(acme_objects)}?key={subject.share_key}"
    assert await refused(communicator(path, origin=PARTNER))
    await allow_origins(subject, PARTNER.decode() + "\n")
    assert await accepted(communicator(path, origin=PARTNER))
    for origin in (b"http://evil.example", b"null", b"http://partner.example"):
        assert await refused(communicator(path, origin=origin)), origin


@pytest.mark.parametrize("route", SESSION_ROUTES, ids=route_ids)
async def test_a_listed_site_may_use_the_key_never_the_session(route, world, acme_objects):
    await allow_origins(route.subject(acme_objects), PARTNER.decode())
    comm = communicator(
        route.fill(acme_objects), cookie=await cookie_for(world.alice), origin=PARTNER
    )
    assert await refused(comm)


@pytest.mark.parametrize("origin", [None, b"http://evil.example"], ids=["no-origin", "foreign"])
@pytest.mark.parametrize("route", TOKEN_ROUTES, ids=route_ids)
async def test_producer_token_works_from_a_script_with_no_ambient_authority(
    route, origin, acme_feed, acme_objects
):
    comm = communicator(
        route.fill(acme_objects),
        origin=origin,
        headers=[(b"authorization", f"Bearer {acme_feed.token}".encode())],
    )
    assert await accepted(comm)


@pytest.mark.parametrize("route", TOKEN_ROUTES, ids=route_ids)
async def test_session_grants_nothing_on_a_token_route(route, world, acme_objects):
    comm = communicator(
        route.fill(acme_objects), cookie=await cookie_for(world.alice), origin=SAME_SITE
    )
    assert await refused(comm)
