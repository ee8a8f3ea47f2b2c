"""Sign-in guessing against the real server: locked by account and by the real client address."""

from __future__ import annotations

import http.client
import re
from urllib.parse import urlencode

import pytest
from django.conf import settings

from tests.conftest import PASSWORD, Daphne

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def server(django_db_blocker):
    daphne = Daphne().start()
    yield daphne
    daphne.stop()


def sign_in(server, username: str, password: str, *, source: str = "127.0.0.1", **headers):
    """One real sign-in through the form, from ``source``: (status, body)."""
    conn = http.client.HTTPConnection(
        "127.0.0.1", server.port, timeout=20, source_address=(source, 0)
    )
    conn.request("GET", "/accounts/login/")
    page = conn.getresponse()
    html = page.read().decode()
    cookie = re.search(r"csrftoken=([^;]+)", page.getheader("Set-Cookie")).group(1)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    body = urlencode({"username": username, "password": password, "csrfmiddlewaretoken": token})
    conn.request(
        "POST",
        "/accounts/login/",
        body,
        {
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={cookie}",
            **headers,
        },
    )
    answer = conn.getresponse()
    status, text = answer.status, answer.read().decode()
    conn.close()
    return status, text


def test_guessing_locks_the_account_and_address_but_not_a_neighbour_elsewhere(world, server):
    for number in range(settings.AXES_FAILURE_LIMIT):
        # A forged X-Forwarded-For does not spread the guesses over addresses:
        # without --proxy-headers the server counts the connection's own address.
        status, _ = sign_in(server, "alice", "wrong", **{"X-Forwarded-For": f"10.1.1.{number}"})
        assert status in (200, 429)
    status, text = sign_in(server, "alice", PASSWORD)
    assert status == 429 and "Too many failed sign-ins" in text
    assert sign_in(server, "bob", PASSWORD)[0] == 429  # same address: locked too
    assert sign_in(server, "bob", PASSWORD, source="127.0.0.2")[0] == 302  # neighbour elsewhere
