"""Admin of tenants, memberships and the audit log: scoping, services, audit."""

import pytest
from django.urls import reverse

from tenants.models import AuditEntry, Membership, Role, Tenant

pytestmark = pytest.mark.django_db


def shown(response) -> list:
    """The objects of a changelist page, as the operator sees them."""
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def membership(world, user, tenant) -> Membership:
    return Membership.objects.get(user=user, tenant=tenant)


# -- scoping -----------------------------------------------------------------


def test_staff_owner_sees_only_their_own_tenant(world, staff_client):
    charlie = staff_client(world.charlie)
    assert shown(charlie.get(reverse("admin:tenants_tenant_changelist"))) == [world.globex]
    members = shown(charlie.get(reverse("admin:tenants_membership_changelist")))
    assert members == [membership(world, world.charlie, world.globex)]
    entries = shown(charlie.get(reverse("admin:tenants_auditentry_changelist")))
    assert entries and {entry.tenant for entry in entries} == {world.globex}


def test_another_tenants_objects_are_not_found_by_url(world, staff_client):
    charlie = staff_client(world.charlie)
    bobs = membership(world, world.bob, world.acme)
    acme_entry = AuditEntry.objects.filter(tenant=world.acme).first()
    for url in [
        reverse("admin:tenants_membership_change", args=[bobs.pk]),
        reverse("admin:tenants_membership_delete", args=[bobs.pk]),
        reverse("admin:tenants_membership_history", args=[bobs.pk]),
        reverse("admin:tenants_tenant_change", args=[world.acme.pk]),
        reverse("admin:tenants_auditentry_change", args=[acme_entry.pk]),
    ]:
        assert charlie.get(url).status_code == 404, url
    # Nor can a forged POST change or remove it.
    change = reverse("admin:tenants_membership_change", args=[bobs.pk])
    assert charlie.post(change, {"role": Role.OWNER}).status_code == 404
    delete = reverse("admin:tenants_membership_delete", args=[bobs.pk])
    assert charlie.post(delete, {"post": "yes"}).status_code == 404
    assert membership(world, world.bob, world.acme).role == Role.VIEWER


def test_bulk_delete_cannot_reach_another_tenants_members(world, staff_client):
    charlie = staff_client(world.charlie)
    bobs = membership(world, world.bob, world.acme)
    charlie.post(
        reverse("admin:tenants_membership_changelist"),
        {"action": "delete_selected", "_selected_action": [bobs.pk], "post": "yes"},
    )
    assert Membership.objects.filter(pk=bobs.pk).exists()


def test_superuser_sees_every_tenant(world, admin_client):
    assert set(shown(admin_client.get(reverse("admin:tenants_tenant_changelist")))) == {
        world.acme,
        world.globex,
    }
    assert len(shown(admin_client.get(reverse("admin:tenants_membership_changelist")))) == 3
    tenants = {
        e.tenant for e in shown(admin_client.get(reverse("admin:tenants_auditentry_changelist")))
    }
    assert tenants == {world.acme, world.globex}


def test_staff_who_own_no_tenant_see_nothing(world, staff_client):
    bob = staff_client(world.bob)  # a viewer in acme, not an owner
    index = bob.get(reverse("admin:index"))
    assert index.status_code == 200 and index.context["app_list"] == []
    for name in ["tenant", "membership", "auditentry"]:
        assert bob.get(reverse(f"admin:tenants_{name}_changelist")).status_code == 403


def test_members_who_own_no_tenant_are_sent_to_sign_in(world, client):
    client.force_login(world.bob)  # viewer in acme, not staff
    response = client.get(reverse("admin:tenants_membership_changelist"))
    assert response.status_code == 302 and "/admin/login/" in response.url


def test_an_owner_without_staff_status_runs_their_own_tenant(world, client):
    client.force_login(world.alice)  # owner of acme, not staff
    members = client.get(reverse("admin:tenants_membership_changelist"))
    assert members.status_code == 200
    assert {m.tenant for m in members.context["cl"].result_list} == {world.acme}
    globex = Membership.objects.get(tenant=world.globex)
    url = reverse("admin:tenants_membership_change", args=[globex.pk])
    assert client.get(url).status_code == 404  # the stranger's tenant stays out of sight


def test_owners_sign_in_to_the_console_and_viewers_are_refused(world, client):
    from tests.conftest import PASSWORD

    login = reverse("admin:login")
    refused = client.post(login, {"username": "bob", "password": PASSWORD})
    assert refused.status_code == 200 and not refused.wsgi_request.user.is_authenticated
    allowed = client.post(login, {"username": "alice", "password": PASSWORD})
    assert allowed.status_code == 302


def test_tenant_choices_are_limited_to_the_owners_tenants(world, staff_client):
    charlie = staff_client(world.charlie)
    form = charlie.get(reverse("admin:tenants_membership_add")).context["adminform"].form
    assert list(form.fields["tenant"].queryset) == [world.globex]
    response = charlie.post(
        reverse("admin:tenants_membership_add"),
        {"tenant": world.acme.pk, "username": "charlie", "role": Role.VIEWER},
    )
    assert response.status_code == 200 and "tenant" in response.context["adminform"].form.errors
    assert not Membership.objects.filter(tenant=world.acme, user=world.charlie).exists()


def test_audit_filter_offers_only_the_owners_tenants(world, staff_client):
    charlie = staff_client(world.charlie)
    page = charlie.get(reverse("admin:tenants_auditentry_changelist")).content.decode()
    assert "globex" in page and "acme" not in page


# -- memberships through the services ----------------------------------------


def test_owner_adds_changes_and_removes_a_member_and_each_is_audited(world, staff_client):
    from tests.tenants.test_invitations import invite, link_in, signed_in

    alice = staff_client(world.alice)
    # An owner invites (tests/tenants/test_invitations.py); the member joins by the link.
    assert (
        signed_in(world.charlie).post(link_in(invite(alice, world.acme, "charlie"))).status_code
        == 302
    )
    added = membership(world, world.charlie, world.acme)
    assert added.role == Role.VIEWER

    change = reverse("admin:tenants_membership_change", args=[added.pk])
    assert alice.post(change, {"role": Role.EDITOR}).status_code == 302
    assert membership(world, world.charlie, world.acme).role == Role.EDITOR

    delete = reverse("admin:tenants_membership_delete", args=[added.pk])
    assert alice.post(delete, {"post": "yes"}).status_code == 302
    assert not Membership.objects.filter(pk=added.pk).exists()

    entries = AuditEntry.objects.filter(tenant=world.acme, actor=world.alice).order_by("id")
    assert [(e.action, e.details) for e in entries][0][0] == "membership.invited"
    assert [(e.action, e.details) for e in entries][1:] == [
        ("membership.added", {"user": "charlie", "role": "viewer"}),
        (
            "membership.role_changed",
            {"user": "charlie", "role": "editor", "previous_role": "viewer"},
        ),
        ("membership.removed", {"user": "charlie", "role": "editor"}),
    ]


def test_superuser_adding_an_unknown_user_or_an_existing_member_is_refused(world, staff_client):
    world.alice.is_superuser = True  # an owner invites instead (test_invitations.py)
    world.alice.save()
    alice = staff_client(world.alice)
    add = reverse("admin:tenants_membership_add")
    unknown = alice.post(add, {"tenant": world.acme.pk, "username": "mallory", "role": "viewer"})
    assert "username" in unknown.context["adminform"].form.errors
    again = alice.post(add, {"tenant": world.acme.pk, "username": "bob", "role": "owner"})
    assert again.context["adminform"].form.non_field_errors()
    assert membership(world, world.bob, world.acme).role == Role.VIEWER


def test_a_tenant_keeps_its_last_owner(world, staff_client):
    alice = staff_client(world.alice)
    own = membership(world, world.alice, world.acme)
    demote = alice.post(
        reverse("admin:tenants_membership_change", args=[own.pk]), {"role": Role.VIEWER}
    )
    assert "role" in demote.context["adminform"].form.errors
    delete = reverse("admin:tenants_membership_delete", args=[own.pk])
    assert alice.post(delete, {"post": "yes"}).status_code == 403
    assert membership(world, world.alice, world.acme).role == Role.OWNER


# -- tenants -----------------------------------------------------------------


def test_superuser_creates_a_tenant_with_an_owner(world, admin_client, admin_user):
    response = admin_client.post(
        reverse("admin:tenants_tenant_add"), {"slug": "initech", "name": "Initech", "owner": "bob"}
    )
    assert response.status_code == 302
    tenant = Tenant.objects.get(slug="initech")
    assert membership(world, world.bob, tenant).role == Role.OWNER
    entry = AuditEntry.objects.get(tenant=tenant, action="tenant.created")
    assert entry.actor == admin_user and entry.details == {"owner": "bob"}


def test_staff_owner_renames_but_cannot_create_or_delete_tenants(world, staff_client):
    alice = staff_client(world.alice)
    assert alice.get(reverse("admin:tenants_tenant_add")).status_code == 403
    change = reverse("admin:tenants_tenant_change", args=[world.acme.pk])
    page = alice.get(change)
    assert page.status_code == 200 and "charlie" not in page.content.decode()
    assert alice.post(change, {"name": "Acme Corp"}).status_code == 302
    assert Tenant.objects.get(pk=world.acme.pk).name == "Acme Corp"
    assert AuditEntry.objects.filter(tenant=world.acme, action="tenant.renamed").exists()
    delete = reverse("admin:tenants_tenant_delete", args=[world.acme.pk])
    assert alice.post(delete, {"post": "yes"}).status_code == 403


# -- the audit log -----------------------------------------------------------


def test_audit_log_is_read_only(world, staff_client):
    alice = staff_client(world.alice)
    entry = AuditEntry.objects.filter(tenant=world.acme).first()
    assert alice.get(reverse("admin:tenants_auditentry_add")).status_code == 403
    change = reverse("admin:tenants_auditentry_change", args=[entry.pk])
    page = alice.get(change)
    assert page.status_code == 200 and not page.context["has_change_permission"]
    alice.post(change, {"action": "forged"})
    assert AuditEntry.objects.get(pk=entry.pk).action == entry.action
    delete = reverse("admin:tenants_auditentry_delete", args=[entry.pk])
    assert alice.post(delete, {"post": "yes"}).status_code == 403


def test_audit_log_filters_by_action(world, staff_client):
    alice = staff_client(world.alice)
    url = reverse("admin:tenants_auditentry_changelist") + "?action=membership.added"
    assert {e.action for e in shown(alice.get(url))} == {"membership.added"}


def test_tenant_list_shows_member_counts_not_the_m2m_field(world, staff_client):
    page = staff_client(world.alice).get(reverse("admin:tenants_tenant_changelist"))
    text = page.content.decode()
    assert "auth.User.None" not in text
    assert f"?tenant__id__exact={world.acme.pk}" in text
