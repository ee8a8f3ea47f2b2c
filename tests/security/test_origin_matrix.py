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
# careless parser might mistake for ours. The test site is https://testserver
# (port 443): SITE_ORIGINS is unset and Django adds "testserver" to ALLOWED_HOSTS.
HOSTILE_ORIGINS = {
    "other-port": b"https://testserver:8443",
    "other-port-8000": b"https://testserver:8000",
    "other-scheme": b"http://testserver",
    "other-scheme-and-port": b"http://testserver:443",
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
SAME_SITE = b"https://testserver"
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


@pytest.mark.parametrize("route", SESSION_ROUTES, ids=route_ids)
async def test_the_default_port_may_be_spelled_out(route, world, acme_objects):
    comm = communicator(
        route.fill(acme_objects), cookie=await cookie_for(world.alice), origin=SAME_SITE + b":443"
    )
    assert await accepted(comm)


# A site served on a port of its own (SITE_ORIGINS): only that scheme, host and port.
CONFIGURED_SITE = "http://testserver:8000"
NOT_THE_CONFIGURED_SITE = [
    b"http://testserver",
    b"http://testserver:8001",
    b"https://testserver:8000",
    b"https://testserver",
    b"http://evil.example:8000",
]


@pytest.mark.parametrize("route", SESSION_ROUTES, ids=route_ids)
async def test_configured_site_origin_is_matched_by_scheme_host_and_port(
    route, world, acme_objects, settings
):
    settings.SITE_ORIGINS = [CONFIGURED_SITE]
    cookie = await cookie_for(world.alice)
    path = route.fill(acme_objects)
    assert await accepted(communicator(path, cookie=cookie, origin=CONFIGURED_SITE.encode()))
    for origin in NOT_THE_CONFIGURED_SITE:
        assert await refused(communicator(path, cookie=cookie, origin=origin)), origin


@pytest.mark.parametrize("route", SESSION_ROUTES, ids=route_ids)
async def test_csrf_trusted_origins_are_trusted_for_sockets_too(
    route, world, acme_objects, settings
):
    settings.CSRF_TRUSTED_ORIGINS = ["https://*.example.org"]
    cookie = await cookie_for(world.alice)
    path = route.fill(acme_objects)
    assert await accepted(communicator(path, cookie=cookie, origin=b"https://app.example.org"))
    for origin in (b"http://app.example.org", b"https://app.example.org:8443"):
        assert await refused(communicator(path, cookie=cookie, origin=origin)), origin


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
