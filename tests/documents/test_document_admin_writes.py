"""Every write of the Document admin goes through the services: audited, open connections told."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.urls import reverse

from documents.models import Document, DocumentChunk
from documents.services import document_create
from tenants.models import AuditEntry
from tests.conftest import session_cookie_for
from tests.documents.conftest import numbers_tsv
from tests.streams.test_revocation import closed_with_revoked, still_open
from tests.streams.wsclient import communicator, receive

pytestmark = pytest.mark.django_db(transaction=True)

PARTNER = "https://partner.example"


async def watcher(path: str, **kwargs):
    comm = communicator(path, **kwargs)
    connected, _ = await comm.connect()
    assert connected
    await receive(comm)  # the page
    return comm


def change_form(document: Document, **changes) -> dict:
    return {"name": document.name, "allowed_origins": document.allowed_origins, **changes}


async def test_deleting_in_the_admin_audits_and_disconnects_every_watcher(
    world, acme_document, staff_client
):
    alice = await database_sync_to_async(staff_client)(world.alice)
    cookie = await database_sync_to_async(session_cookie_for)(world.bob)
    by_key = await watcher(f"/ws/documents/{acme_document.uuid}/?key={acme_document.share_key}")
    member = await watcher(f"/ws/documents/{acme_document.uuid}/", cookie=cookie)
    url = reverse("admin:documents_document_delete", args=[acme_document.pk])
    response = await database_sync_to_async(alice.post)(url, {"post": "yes"})
    assert response.status_code == 302
    assert await closed_with_revoked(by_key)
    assert await closed_with_revoked(member)
    entry = await database_sync_to_async(AuditEntry.objects.get)(action="document.deleted")
    assert entry.actor_id == world.alice.pk and entry.target_uuid == acme_document.uuid
    assert entry.details["name"] == acme_document.name
    assert not await database_sync_to_async(DocumentChunk.objects.exists)()


def test_bulk_delete_goes_through_the_service_for_each_document(world, staff_client):
    documents = [
        document_create(tenant=world.acme, name=f"d{n}", data=numbers_tsv(5)).document
        for n in range(3)
    ]
    alice = staff_client(world.alice)
    alice.post(
        reverse("admin:documents_document_changelist"),
        {"action": "delete_selected", "_selected_action": [d.pk for d in documents], "post": "yes"},
    )
    assert not Document.objects.filter(pk__in=[d.pk for d in documents]).exists()
    deleted = AuditEntry.objects.filter(action="document.deleted")
    assert {entry.target_uuid for entry in deleted} == {d.uuid for d in documents}


async def test_dropping_an_allowed_origin_in_the_admin_audits_and_cuts_that_sites_viewers(
    world, acme_document, staff_client
):
    acme_document.allowed_origins = PARTNER
    await database_sync_to_async(acme_document.save)(update_fields=["allowed_origins"])
    path = f"/ws/documents/{acme_document.uuid}/?key={acme_document.share_key}"
    partner = await watcher(path, origin=PARTNER.encode())
    script = await watcher(path, origin=None)
    alice = await database_sync_to_async(staff_client)(world.alice)
    url = reverse("admin:documents_document_change", args=[acme_document.pk])
    form = change_form(acme_document, name="renamed", allowed_origins="")
    response = await database_sync_to_async(alice.post)(url, form)
    assert response.status_code == 302
    assert await closed_with_revoked(partner)
    assert await still_open(script)  # the key still opens it where no origin is involved
    await script.disconnect()
    entry = await database_sync_to_async(AuditEntry.objects.get)(action="document.changed")
    assert entry.actor_id == world.alice.pk
    assert sorted(entry.details["fields"]) == ["allowed_origins", "name"]
    fresh = await database_sync_to_async(Document.objects.get)(pk=acme_document.pk)
    assert (fresh.name, fresh.allowed_origins) == ("renamed", "")


def test_saving_without_a_change_writes_no_audit_entry(world, acme_document, staff_client):
    alice = staff_client(world.alice)
    url = reverse("admin:documents_document_change", args=[acme_document.pk])
    assert alice.post(url, change_form(acme_document)).status_code == 302
    assert not AuditEntry.objects.filter(action="document.changed").exists()


def test_another_tenants_owner_cannot_delete(world, acme_document, staff_client):
    charlie = staff_client(world.charlie)
    url = reverse("admin:documents_document_delete", args=[acme_document.pk])
    assert charlie.post(url, {"post": "yes"}).status_code == 404
    assert Document.objects.filter(pk=acme_document.pk).exists()
