"""Quotas in the admin: usage against quotas on the list and the change page, editing
by superusers only, and creation forms that name the limit."""

from __future__ import annotations

import pytest
from django.urls import reverse

from documents.services import document_create
from streams.models import Feed
from streams.services import feed_create
from tenants.models import AuditEntry, Tenant
from tests.documents.conftest import numbers_tsv

pytestmark = pytest.mark.django_db


def change_url(tenant) -> str:
    return reverse("admin:tenants_tenant_change", args=[tenant.pk])


def change_form(tenant, **quotas) -> dict:
    """The change form as the browser posts it: every field, quotas empty unless given."""
    form = {"name": tenant.name}
    for field in (
        "quota_max_feeds", "quota_max_documents", "quota_max_stored_bytes",
        "quota_samples_per_second", "quota_concurrent_uploads", "quota_concurrent_exports",
    ):  # fmt: skip
        value = quotas.get(field, getattr(tenant, field))
        form[field] = "" if value is None else str(value)
    return form


def test_the_tenant_list_shows_each_tenants_usage_against_its_quotas(world, admin_client):
    world.acme.quota_max_feeds = 3
    world.acme.save()
    feed_create(tenant=world.acme, name="one")
    document_create(tenant=world.globex, name="doc", data=numbers_tsv(10))

    page = admin_client.get(reverse("admin:tenants_tenant_changelist")).content.decode()

    acme_row = page[page.index(">acme<") : page.index(">globex<")]
    globex_row = page[page.index(">globex<") :]
    assert "1 / 3" in acme_row  # feeds, against acme's own quota
    assert "0 / 100" in acme_row  # documents, against the default
    assert "1 / 100" in globex_row
    assert "/ 1.0\xa0GB" in page  # stored bytes, against the default 1 GiB


def test_the_change_page_shows_usage_and_the_owner_sees_quotas_read_only(
    world, staff_client, admin_client
):
    feed_create(tenant=world.globex, name="x")
    owner_page = staff_client(world.charlie).get(change_url(world.globex)).content.decode()
    superuser_page = admin_client.get(change_url(world.globex)).content.decode()

    for page in (owner_page, superuser_page):
        assert "quota-usage" in page and "max_feeds" in page and "concurrent_exports" in page
    assert 'name="quota_max_feeds"' not in owner_page
    assert 'name="quota_max_feeds"' in superuser_page


def test_a_tenant_owner_cannot_raise_their_own_quota(world, staff_client):
    world.globex.quota_max_feeds = 2
    world.globex.save()

    response = staff_client(world.charlie).post(
        change_url(world.globex), change_form(world.globex, quota_max_feeds=100_000)
    )

    assert response.status_code == 302  # the rest of the form saved; the quota did not change
    assert Tenant.objects.get(pk=world.globex.pk).quota_max_feeds == 2
    assert not AuditEntry.objects.filter(action="tenant.quotas_changed").exists()


def test_a_superuser_sets_and_clears_a_tenants_quota_and_it_is_audited(
    world, admin_client, admin_user
):
    response = admin_client.post(
        change_url(world.acme), change_form(world.acme, quota_max_feeds=1, quota_max_stored_bytes=5)
    )
    assert response.status_code == 302
    acme = Tenant.objects.get(pk=world.acme.pk)
    assert (acme.quota_max_feeds, acme.quota_max_stored_bytes) == (1, 5)
    entry = AuditEntry.objects.get(action="tenant.quotas_changed")
    assert entry.actor == admin_user and entry.tenant == acme
    assert entry.details["quota_max_feeds"] == {"from": None, "to": 1}

    admin_client.post(change_url(acme), change_form(acme, quota_max_feeds=None))
    assert Tenant.objects.get(pk=acme.pk).quota_max_feeds is None  # back to the default
    assert Tenant.objects.get(pk=world.globex.pk).quota_max_feeds is None


def test_adding_a_feed_over_quota_in_the_admin_is_a_form_error_naming_the_limit(
    world, admin_client
):
    world.acme.quota_max_feeds = 0
    world.acme.save()
    url = reverse("admin:streams_feed_add")

    refused = admin_client.post(url, {"tenant": world.acme.pk, "name": "n", "kind": "binary"})
    accepted = admin_client.post(url, {"tenant": world.globex.pk, "name": "n", "kind": "binary"})

    assert refused.status_code == 200 and "max_feeds" in refused.content.decode()
    assert not Feed.objects.filter(tenant=world.acme).exists()
    assert accepted.status_code == 302 and Feed.objects.filter(tenant=world.globex).count() == 1
