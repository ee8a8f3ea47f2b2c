"""A tenant owner adds members by invitation: the admin's answer never says whether a username exists."""

from __future__ import annotations

import html
import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from tenants.models import AuditEntry, Membership, Role
from tenants.services import membership_remove

pytestmark = pytest.mark.django_db

ADD = "admin:tenants_membership_add"


def invite(owner_client, tenant, username: str, role: str = "viewer"):
    return owner_client.post(
        reverse(ADD), {"tenant": tenant.pk, "username": username, "role": role}, follow=True
    )


def link_in(response) -> str:
    text = " ".join(str(m) for m in response.context["messages"])
    return html.unescape(re.search(r"(/invitations/\?token=[^\s<]+)", text).group(1))


def shown_answer(response) -> str:
    """What the owner sees, with the parts that must differ (the name typed, the link) blanked."""
    text = " ".join(str(m) for m in response.context["messages"])
    text = re.sub(r"/invitations/\?token=[^\s<]+", "LINK", text)
    return text.replace("charlie", "NAME").replace("nobody-by-this-name", "NAME")


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_answer_is_the_same_whether_or_not_the_username_exists(world, staff_client):
    alice = staff_client(world.alice)
    known = invite(alice, world.acme, "charlie")
    unknown = invite(alice, world.acme, "nobody-by-this-name")
    assert known.status_code == unknown.status_code == 200
    assert known.redirect_chain == unknown.redirect_chain
    assert shown_answer(known) == shown_answer(unknown)
    # Nobody was added yet, so the member list does not tell either.
    assert not Membership.objects.filter(tenant=world.acme, user=world.charlie).exists()
    invited = AuditEntry.objects.filter(action="membership.invited").order_by("id")
    assert [e.details["username"] for e in invited] == ["charlie", "nobody-by-this-name"]


def test_invited_user_joins_by_opening_the_link_once(world, staff_client):
    link = link_in(invite(staff_client(world.alice), world.acme, "charlie", "editor"))
    charlie = signed_in(world.charlie)
    page = charlie.get(link)
    assert page.status_code == 200 and "Join acme" in page.content.decode()
    assert charlie.post(link).status_code == 302
    member = Membership.objects.get(tenant=world.acme, user=world.charlie)
    assert member.role == Role.EDITOR
    added = AuditEntry.objects.get(action="membership.added", details__user="charlie")
    assert added.actor == world.alice
    # Used: opening it again does nothing, even after the member was removed.
    membership_remove(membership=member, actor=world.alice)
    again = charlie.post(link)
    assert again.status_code == 400 and "used or replaced" in again.content.decode()
    assert not Membership.objects.filter(tenant=world.acme, user=world.charlie).exists()


def test_the_link_works_only_for_the_invited_username(world, staff_client):
    link = link_in(invite(staff_client(world.alice), world.acme, "charlie"))
    bob = signed_in(world.bob)
    assert bob.post(link).status_code == 400
    stranger = get_user_model().objects.create_user("nobody-by-this-name", password="x")
    assert signed_in(stranger).post(link).status_code == 400
    anonymous = Client().get(link)
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]
    assert not Membership.objects.filter(tenant=world.acme, user=world.charlie).exists()


def test_a_forged_or_tampered_link_is_refused(world, staff_client):
    link = link_in(invite(staff_client(world.alice), world.acme, "charlie", "viewer"))
    charlie = signed_in(world.charlie)
    tampered = link[:-3] + ("A" if link[-3] != "A" else "B") + link[-2:]
    assert charlie.post(tampered).status_code == 400
    assert charlie.post("/invitations/?token=not-a-token").status_code == 400
    assert charlie.post("/invitations/").status_code == 400
    assert not Membership.objects.filter(tenant=world.acme, user=world.charlie).exists()


def test_an_invitation_dies_with_its_inviters_ownership(world, staff_client):
    link = link_in(invite(staff_client(world.alice), world.acme, "charlie"))
    Membership.objects.filter(tenant=world.acme, user=world.alice).update(role=Role.VIEWER)
    assert signed_in(world.charlie).post(link).status_code == 400


def test_existing_members_of_the_owners_own_tenant_are_still_named(world, staff_client):
    response = invite(staff_client(world.alice), world.acme, "bob", "owner")
    assert response.context["adminform"].form.non_field_errors()
    assert Membership.objects.get(tenant=world.acme, user=world.bob).role == Role.VIEWER


def test_superusers_add_existing_users_directly(world, staff_client):
    world.charlie.is_superuser = True
    world.charlie.save()
    operator = staff_client(world.charlie)
    response = operator.post(
        reverse(ADD), {"tenant": world.acme.pk, "username": "charlie", "role": "viewer"}
    )
    assert response.status_code == 302
    assert Membership.objects.filter(tenant=world.acme, user=world.charlie).exists()
