"""A 100 MB body to every HTTP route, announced by Content-Length or chunked without one.

Generated from the URLconf (tests/security/routes.py), so a new route is in
the matrix the day it is added; the admin's sign-in page is added by hand
(the admin's URLs are not in the generated list). The fixed server answers
413 ``too_large`` before it reads the body; the server's memory barely moves.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import Daphne
from tests.isolation.conftest import assert_isolated, report_server_log, start_server
from tests.isolation.harness import MB, http_request, post_huge_body
from tests.security.routes import http_routes

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

BODY_BYTES = 100 * MB
RSS_BOUND_MB = 20
# Outside the generated list (tests/security/routes.py leaves the admin out).
EXTRA_PATHS = ["/admin/login/"]
ROUTES = [str(route) for route in http_routes()] + EXTRA_PATHS


class Servers:
    """One server for the cases of this module, replaced after a case that bloated it:
    freed memory stays in the process and would hide the next case's growth."""

    def __init__(self, tmp_path_factory) -> None:
        self.tmp_path_factory = tmp_path_factory
        self.current: Daphne | None = None

    def get(self) -> Daphne:
        if self.current is None:
            self.current = start_server(self.tmp_path_factory.mktemp("huge-body"))
        return self.current

    def retire(self) -> None:
        if self.current is not None:
            self.current.stop()
            report_server_log(self.current)
            self.current = None


@pytest.fixture(scope="module")
def servers(django_db_setup, tmp_path_factory):
    pool = Servers(tmp_path_factory)
    yield pool
    pool.retire()


@pytest.fixture
def server(servers, transactional_db):
    return servers.get()


def fill(template: str, attacker) -> str:
    for route in http_routes():
        if str(route) == template:
            return route.fill({"feed": attacker.feed, "document": attacker.document})
    return template


def test_every_route_is_in_the_matrix():
    assert len(ROUTES) == len(set(ROUTES)) >= 10


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("template", ROUTES)
def test_huge_body_is_refused_413_before_it_is_read(
    template, framing, servers, server, attacker, probed
):
    path = fill(template, attacker)

    async def attack():
        return await asyncio.to_thread(
            post_huge_body, server, path, size=BODY_BYTES, chunked=framing == "chunked"
        )

    outcome = probed(
        attack, label=f"huge body, {framing}, POST {template}", warmup=0.3, cooldown=0.3
    )
    answer = outcome.result
    print(f"attacker: {answer}")
    problems = []
    body = answer.json() or {}
    refused = answer.status == 413 and body.get("error") == "too_large" and "limit" in body
    # A chunked body can only be counted: the server may cut the connection right
    # after its 413, and a reset can discard the answer before it is read.
    cut_short = framing == "chunked" and answer.status is None and answer.ended == "reset"
    if not (refused or cut_short):
        problems.append(f"attacker: POST {template} ({framing}) answered {answer}")
    if answer.sent >= BODY_BYTES // 2:
        problems.append(
            f"attacker: the server read {answer.sent / MB:.0f} MB of the body before answering"
        )
    health = http_request(server, "GET", "/healthz", timeout=30)
    if health.status != 200:
        problems.append(f"server: /healthz answered {health} afterwards")
    if outcome.rss.growth_mb > RSS_BOUND_MB or health.status != 200:
        servers.retire()
    assert_isolated(outcome, rss_bound_mb=RSS_BOUND_MB, attacker_problems=problems)
