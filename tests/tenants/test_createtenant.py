import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from tenants.models import Membership, Role

pytestmark = pytest.mark.django_db


def test_creates_tenant_and_owner_with_password_from_environment(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "s3cret-enough-pass")
    call_command("createtenant", "initech", "--owner", "peter")
    user = get_user_model().objects.get(username="peter")
    assert user.check_password("s3cret-enough-pass")
    membership = Membership.objects.get(user=user)
    assert membership.tenant.slug == "initech" and membership.role == Role.OWNER


def test_existing_user_becomes_owner_of_a_second_tenant(world):
    call_command("createtenant", "second", "--owner", "alice")
    assert set(world.alice.tenants.values_list("slug", flat=True)) == {"acme", "second"}


def test_duplicate_slug_is_an_error(world):
    with pytest.raises(CommandError):
        call_command("createtenant", "acme", "--owner", "alice")


def test_staff_flag_lets_the_owner_into_the_admin(world):
    assert not world.alice.is_staff
    call_command("createtenant", "second", "--owner", "alice", "--staff")
    world.alice.refresh_from_db()
    assert world.alice.is_staff and not world.alice.is_superuser


def test_tenant_creation_is_audited(world):
    from tenants.models import AuditEntry

    call_command("createtenant", "second", "--owner", "alice")
    entry = AuditEntry.objects.get(action="tenant.created", tenant__slug="second")
    assert entry.actor is None and entry.details == {"owner": "alice"}


def test_a_slug_that_is_not_one_is_refused_and_nothing_is_created(db):
    with pytest.raises(CommandError, match="not a slug"):
        call_command("createtenant", "Bad Slug!", "--owner", "peter")
    assert not get_user_model().objects.filter(username="peter").exists()


def test_new_owner_without_a_given_password_gets_one_that_signs_in(monkeypatch, capsys):
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)
    call_command("createtenant", "initech", "--owner", "peter")
    printed = capsys.readouterr().out
    password = printed.split("with password ", 1)[1].split(" ", 1)[0]
    assert get_user_model().objects.get(username="peter").check_password(password)
