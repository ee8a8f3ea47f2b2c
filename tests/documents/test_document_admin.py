"""The Document admin: scoped to the operator's tenants; share keys rotate and revoke through services."""

import pytest
from django.urls import reverse

from documents.models import Document
from tenants.models import AuditEntry

pytestmark = pytest.mark.django_db


def test_another_tenants_staff_see_none_of_its_documents(world, acme_document, staff_client):
    charlie = staff_client(world.charlie)
    listing = charlie.get(reverse("admin:documents_document_changelist"))
    assert listing.status_code == 200
    assert acme_document.name not in listing.content.decode()
    change = reverse("admin:documents_document_change", args=[acme_document.pk])
    assert charlie.get(change).status_code == 404


def test_owner_revokes_the_share_key_and_it_is_audited_without_the_key(
    world, acme_document, staff_client
):
    alice = staff_client(world.alice)
    old_key = acme_document.share_key
    page = alice.get(reverse("admin:documents_document_change", args=[acme_document.pk]))
    assert page.status_code == 200 and old_key not in page.content.decode()
    action = reverse("admin:documents_document_act", args=[acme_document.pk, "revoke_share_key"])
    alice.post(action)
    assert Document.objects.get(pk=acme_document.pk).share_key is None
    entry = AuditEntry.objects.get(action="document.share_key_revoked")
    assert entry.actor == world.alice and old_key not in repr(entry.details)
