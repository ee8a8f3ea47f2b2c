"""The admin's "View on site" redirect (/admin/r/<content type>/<pk>/) reveals nothing of other tenants."""

from __future__ import annotations

import pytest
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse

from tests.documents import conftest as documents

pytestmark = pytest.mark.django_db

acme_document = documents.acme_document
globex_document = documents.globex_document


def view_on_site(client, obj):
    content_type = ContentType.objects.get_for_model(obj)
    return client.get(reverse("admin:view_on_site", args=[content_type.pk, obj.pk]))


def test_staff_owner_walking_every_id_learns_nothing_of_another_tenant(
    world, staff_client, acme_feed, acme_document, globex_feed, globex_document
):
    charlie = staff_client(world.charlie)
    acme_uuids = {str(acme_feed.feed.uuid), str(acme_document.uuid), str(world.acme.uuid)}
    for content_type in ContentType.objects.all():
        model = content_type.model_class()
        if model is None:
            continue
        for pk in model.objects.values_list("pk", flat=True):
            response = charlie.get(reverse("admin:view_on_site", args=[content_type.pk, pk]))
            location = response.get("Location", "")
            assert not any(uuid in location for uuid in acme_uuids), (content_type, pk)
            assert response.status_code in (302, 404)
    assert view_on_site(charlie, acme_feed.feed).status_code == 404
    assert view_on_site(charlie, acme_document).status_code == 404


def test_staff_owner_still_views_their_own_objects_on_the_site(
    world, staff_client, globex_feed, globex_document
):
    charlie = staff_client(world.charlie)
    feed = view_on_site(charlie, globex_feed.feed)
    assert feed.status_code == 302 and str(globex_feed.feed.uuid) in feed["Location"]
    document = view_on_site(charlie, globex_document)
    assert document.status_code == 302 and str(globex_document.uuid) in document["Location"]


def test_superuser_views_any_tenants_object(world, staff_client, acme_feed):
    world.charlie.is_superuser = True
    world.charlie.save()
    response = view_on_site(staff_client(world.charlie), acme_feed.feed)
    assert response.status_code == 302 and str(acme_feed.feed.uuid) in response["Location"]


def test_signed_out_visitor_is_sent_to_the_admin_sign_in(acme_feed, client):
    response = view_on_site(client, acme_feed.feed)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
