"""Tenant isolation, generated from the URLconf and the WebSocket routes.

charlie (owner of globex) comes with everything he legitimately holds: his
session, a CSRF token, his own feed's producer token, his own objects' share
keys. Every route that names an object by UUID, filled with acme's objects,
answers him as it answers a UUID that names nothing: 404, or 403 on a token
route, or 405 for a method the view does not take; never the object, never a
500. Anonymous clients get the same, or the login page. Alice, with the same
kinds of credentials for acme, gets through: the control that shows the
generated paths reach real objects.

The admin is not part of the matrix: its object ids are primary keys, it has no
tenant scoping yet (only superusers and users given model permissions see any
row), and it is being built elsewhere.
"""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.shortcuts import resolve_url
from django.test import Client

from tests.conftest import session_cookie_for
from tests.security.routes import (
    OBJECT_PARAMETERS,
    http_object_routes,
    http_routes,
    websocket_object_routes,
)
from tests.streams.wsclient import communicator, refused

HTTP_ROUTES = http_object_routes()
WEBSOCKET_ROUTES = websocket_object_routes()
METHODS = ["GET", "POST"]
# Pages anyone may open; every other page without an object needs an account.
PUBLIC_PATHS = {
    "/accounts/login/",
    "/accounts/logout/",
    "/healthz",
    "/metrics",
    "/favicon.ico",
    "/api/openapi.json",  # the API's description: public, names no object
}
ACCOUNT_ROUTES = [r for r in http_routes() if not r.parameters and str(r) not in PUBLIC_PATHS]

cookie_for = database_sync_to_async(session_cookie_for)


def route_ids(route) -> str:
    return str(route)


def nothing() -> dict[str, SimpleNamespace]:
    """Objects whose UUIDs name nothing in the database."""
    return {name: SimpleNamespace(uuid=uuid.uuid4()) for name in set(OBJECT_PARAMETERS.values())}


def test_every_object_route_can_be_filled():
    # A route whose parameters the generator cannot fill would silently escape
    # every matrix below: fail here, naming it.
    assert HTTP_ROUTES and WEBSOCKET_ROUTES
    unfillable = []
    for route in HTTP_ROUTES + WEBSOCKET_ROUTES:
        try:
            route.fill(nothing())
        except LookupError as exc:
            unfillable.append(str(exc))
    assert not unfillable, "\n".join(unfillable)


class Visitor:
    """A browser-like client with a session (or none), a CSRF token, a producer token and keys."""

    def __init__(self, user, *, token: str | None, objects: dict | None) -> None:
        self.client = Client(enforce_csrf_checks=True)
        if user is not None:
            self.client.force_login(user)
        self.client.get(resolve_url(settings.LOGIN_URL))  # sets the CSRF cookie
        self.csrf = self.client.cookies["csrftoken"].value
        self.token = token
        self.objects = objects or {}

    def request(self, method: str, route, objects: dict):
        path = route.fill(objects)
        own = self.objects.get(OBJECT_PARAMETERS[route.parameters[-1]])
        if own is not None and own.share_key:
            path += f"?key={own.share_key}"
        headers = {"X-CSRFToken": self.csrf}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if method == "GET":
            response = self.client.get(path, headers=headers)
        else:
            response = self.client.post(path, {}, headers=headers)
        response.close()  # a stream (Server-Sent Events) is never read
        return response


def assert_refused(response, method: str, *, anonymous: bool = False) -> None:
    status = response.status_code
    if anonymous and status == 302:
        assert response["Location"].startswith(resolve_url(settings.LOGIN_URL))
        return
    allowed = {"GET": {404, 405}, "POST": {403, 404, 405}}[method]
    assert status in allowed, f"{method} answered {status}"
    if status == 403:
        assert b"CSRF" not in response.content  # refused by the view, not by the CSRF check


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("route", HTTP_ROUTES, ids=route_ids)
def test_stranger_gets_what_a_uuid_naming_nothing_gets(
    route, method, world, acme_objects, globex_objects, globex_feed
):
    charlie = Visitor(world.charlie, token=globex_feed.token, objects=globex_objects)
    response = charlie.request(method, route, acme_objects)
    assert_refused(response, method)
    no_such_object = charlie.request(method, route, nothing())
    assert response.status_code == no_such_object.status_code
    if response.status_code == 403:
        assert response.content == no_such_object.content


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("route", HTTP_ROUTES, ids=route_ids)
def test_anonymous_client_gets_not_found_or_the_login_page(route, method, acme_objects):
    anonymous = Visitor(None, token=None, objects=None)
    assert_refused(anonymous.request(method, route, acme_objects), method, anonymous=True)


@pytest.mark.django_db
@pytest.mark.parametrize("route", ACCOUNT_ROUTES, ids=route_ids)
def test_pages_without_an_object_send_anonymous_clients_to_sign_in(route):
    response = Client().get(route.fill({}))
    assert response.status_code == 302
    assert response["Location"].startswith(resolve_url(settings.LOGIN_URL))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("route", HTTP_ROUTES, ids=route_ids)
def test_owner_with_the_same_kinds_of_credentials_gets_through(
    route, method, world, acme_objects, acme_feed
):
    alice = Visitor(world.alice, token=acme_feed.token, objects=acme_objects)
    response = alice.request(method, route, acme_objects)
    assert response.status_code not in (403, 404) and response.status_code < 500


def credentials_path(route, objects: dict, own: dict, token: str) -> str:
    key = own[OBJECT_PARAMETERS[route.parameters[-1]]].share_key
    return f"{route.fill(objects)}?key={key}&token={token}"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("route", WEBSOCKET_ROUTES, ids=route_ids)
async def test_stranger_is_refused_at_the_handshake(
    route, world, acme_objects, globex_objects, globex_feed
):
    comm = communicator(
        credentials_path(route, acme_objects, globex_objects, globex_feed.token),
        cookie=await cookie_for(world.charlie),
        headers=[(b"authorization", f"Bearer {globex_feed.token}".encode())],
    )
    assert await refused(comm)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("route", WEBSOCKET_ROUTES, ids=route_ids)
async def test_owner_with_the_same_kinds_of_credentials_is_let_in(
    route, world, acme_objects, acme_feed
):
    comm = communicator(
        credentials_path(route, acme_objects, acme_objects, acme_feed.token),
        cookie=await cookie_for(world.alice),
        headers=[(b"authorization", f"Bearer {acme_feed.token}".encode())],
    )
    assert not await refused(comm)
