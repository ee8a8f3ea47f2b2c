"""Sign-in throttling (django-axes) on the site's sign-in page and the admin's."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_hasher(world, settings):
    """Dozens of sign-ins a test: a fast hasher (the real one costs ~0.3 s a check)."""
    from django.contrib.auth.hashers import make_password

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    for user in (world.alice, world.bob, world.charlie):
        user.password = make_password(PASSWORD)
        user.save(update_fields=["password"])


SIGN_IN_PAGES = ["login", "admin:login"]


def sign_in(page: str, username: str, password: str, address: str):
    return Client(REMOTE_ADDR=address).post(
        reverse(page), {"username": username, "password": password}
    )


def signed_in(response) -> bool:
    return response.status_code == 302 and "_auth_user_id" in response.client.session


def fail_until_locked(page: str, username: str, address: str) -> None:
    for _ in range(settings.AXES_FAILURE_LIMIT):
        assert sign_in(page, username, "wrong", address).status_code in (200, 429)


@pytest.mark.parametrize("page", SIGN_IN_PAGES)
def test_repeated_failures_lock_the_account_even_for_the_right_password(world, page):
    world.alice.is_staff = True  # so that the admin would let her in
    world.alice.save()
    fail_until_locked(page, "alice", "10.0.0.1")
    locked = sign_in(page, "alice", PASSWORD, "10.0.0.1")
    assert locked.status_code == 429
    assert "Too many failed sign-ins" in locked.content.decode()
    assert "_auth_user_id" not in locked.client.session
    # From another address too: it is her account that is locked.
    assert sign_in(page, "alice", PASSWORD, "10.0.0.2").status_code == 429


@pytest.mark.parametrize("page", SIGN_IN_PAGES)
def test_neighbour_account_from_another_address_is_unaffected(world, page):
    world.bob.is_staff = True
    world.bob.save()
    fail_until_locked(page, "alice", "10.0.0.1")
    assert signed_in(sign_in(page, "bob", PASSWORD, "10.0.0.2"))


def test_failures_from_one_address_lock_that_address_for_every_account(world):
    for number in range(settings.AXES_FAILURE_LIMIT):
        sign_in("login", f"guess{number}", "wrong", "10.0.0.9")
    assert sign_in("login", "bob", PASSWORD, "10.0.0.9").status_code == 429
    assert signed_in(sign_in("login", "bob", PASSWORD, "10.0.0.2"))


def test_fewer_failures_than_the_limit_then_the_right_password_signs_in(world):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        sign_in("login", "alice", "wrong", "10.0.0.1")
    assert signed_in(sign_in("login", "alice", PASSWORD, "10.0.0.1"))
    # The success cleared the count: as many failures again do not lock.
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        sign_in("login", "alice", "wrong", "10.0.0.1")
    assert signed_in(sign_in("login", "alice", PASSWORD, "10.0.0.1"))


@pytest.mark.parametrize(
    "command", [("axes_reset",), ("axes_reset_username", "alice"), ("axes_reset_ip", "10.0.0.1")]
)
def test_operator_lifts_the_lock_with_a_command(world, command):
    fail_until_locked("login", "alice", "10.0.0.1")
    assert sign_in("login", "alice", PASSWORD, "10.0.0.1").status_code == 429
    call_command(*command)
    assert signed_in(sign_in("login", "alice", PASSWORD, "10.0.0.1"))


def test_operator_lifts_the_lock_in_the_admin(world, staff_client):
    from axes.models import AccessAttempt

    fail_until_locked("login", "alice", "10.0.0.1")
    operator = staff_client(world.charlie)
    world.charlie.is_superuser = True
    world.charlie.save()
    changelist = operator.get(reverse("admin:axes_accessattempt_changelist"))
    assert changelist.status_code == 200 and "alice" in changelist.content.decode()
    attempt = AccessAttempt.objects.get(username="alice")
    operator.post(reverse("admin:axes_accessattempt_delete", args=[attempt.pk]), {"post": "yes"})
    assert signed_in(sign_in("login", "alice", PASSWORD, "10.0.0.1"))


def test_tenant_owner_cannot_see_the_attempts(world, staff_client):
    fail_until_locked("login", "bob", "10.0.0.1")
    owner = staff_client(world.charlie)  # staff, not superuser
    assert owner.get(reverse("admin:axes_accessattempt_changelist")).status_code == 403
