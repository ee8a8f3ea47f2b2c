"""Memberships keep an owner; the audit log takes no secret."""

import pytest

from tenants.models import AuditEntry, Membership, Role
from tenants.services import MembershipError, audit_record, membership_remove, membership_set

pytestmark = pytest.mark.django_db


def test_the_last_owner_can_neither_leave_nor_be_demoted(world):
    owner = Membership.objects.get(tenant=world.acme, user=world.alice)
    with pytest.raises(MembershipError):
        membership_remove(membership=owner)
    with pytest.raises(MembershipError):
        membership_set(tenant=world.acme, user=world.alice, role=Role.VIEWER)
    assert Membership.objects.get(pk=owner.pk).role == Role.OWNER


def test_an_owner_may_leave_once_there_is_another(world):
    membership_set(tenant=world.acme, user=world.bob, role=Role.OWNER, actor=world.alice)
    membership_remove(membership=Membership.objects.get(tenant=world.acme, user=world.alice))
    assert list(world.acme.memberships.values_list("user__username", flat=True)) == ["bob"]


def test_setting_the_same_role_again_records_nothing(world):
    before = AuditEntry.objects.count()
    membership_set(tenant=world.acme, user=world.bob, role=Role.VIEWER)
    assert AuditEntry.objects.count() == before


@pytest.mark.parametrize("name", ["token", "share_key", "key", "password"])
def test_audit_details_refuse_secrets(world, name):
    with pytest.raises(ValueError):
        audit_record(
            actor=None, tenant=world.acme, action="x.y", target=world.acme, details={name: "s"}
        )
