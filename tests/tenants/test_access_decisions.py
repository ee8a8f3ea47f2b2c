"""One access decision per request: the object and every capability of the caller, in one query.

Each helper (streams.access.feed_access, documents.access.document_access) is
checked across the whole matrix: owner, editor, viewer, share-key holder (with
and without steering), a foreign page, and the stranger of another tenant.
"""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import AnonymousUser
from django.urls import reverse

from documents import access as document_access
from documents.services import document_create, document_share_set
from streams import access as feed_access
from tenants.models import Role
from tenants.services import membership_set
from tests.documents.conftest import numbers_tsv

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme_document(world):
    """As tests/documents/conftest.py's: 250 rows, followable by share key."""
    return document_create(
        tenant=world.acme, name="numbers", data=numbers_tsv(250), share="follow"
    ).document


@pytest.fixture
def editor(world, django_user_model):
    user = django_user_model.objects.create(username="erin")
    membership_set(tenant=world.acme, user=user, role=Role.EDITOR)
    return user


def _capabilities(found):
    return None if found is None else (found.may.view, found.may.publish, found.may.manage)


def test_feed_access_gives_each_caller_their_capabilities_in_one_query(
    world, editor, acme_feed, django_assert_num_queries
):
    feed = acme_feed.feed
    cases = {
        "owner": (world.alice, None, (True, True, True)),
        "editor": (editor, None, (True, True, False)),
        "viewer": (world.bob, None, (True, False, False)),
        "key holder": (AnonymousUser(), feed.share_key, (True, False, False)),
        "stranger": (world.charlie, None, None),
        "stranger with a wrong key": (world.charlie, "not-the-key", None),
    }
    for name, (user, key, expected) in cases.items():
        with django_assert_num_queries(1):
            found = feed_access.feed_access(user, feed.uuid, key=key)
        assert _capabilities(found) == expected, name
    assert feed_access.feed_access(world.alice, uuid.uuid4()) is None
    assert feed_access.feed_access(world.alice, "not-a-uuid") is None


def test_a_foreign_page_counts_only_the_key_and_only_if_its_site_is_listed(world, acme_feed):
    feed = acme_feed.feed
    foreign = "https://partner.example"
    assert feed_access.feed_access(world.alice, feed.uuid, foreign_origin=foreign) is None
    assert feed_access.feed_access(world.bob, feed.uuid, key=feed.share_key,
                                   foreign_origin=foreign) is None  # fmt: skip
    feed.allowed_origins = foreign
    feed.save(update_fields=["allowed_origins"])
    found = feed_access.feed_access(world.alice, feed.uuid, key=feed.share_key,
                                    foreign_origin=foreign)  # fmt: skip
    # The owner's session does not count from there: the key lets them view, no more.
    assert _capabilities(found) == (True, False, False) and found.may.by_key


def test_document_access_gives_steering_to_editors_and_to_keys_only_when_allowed(
    world, editor, acme_document, django_assert_num_queries
):
    document = acme_document
    key = document.share_key
    cases = {
        "owner": (world.alice, None, (True, True, True)),
        "editor": (editor, None, (True, True, False)),
        "viewer": (world.bob, None, (True, False, False)),
        "key holder": (AnonymousUser(), key, (True, False, False)),
        "stranger": (world.charlie, None, None),
    }
    for name, (user, given, expected) in cases.items():
        with django_assert_num_queries(1):
            found = document_access.document_access(user, document.uuid, key=given)
        assert _capabilities(found) == expected, name
    document_share_set(document=document, share="steer")
    found = document_access.document_access(AnonymousUser(), document.uuid, key=key)
    assert found.can_steer and found.can_upload and not found.may.manage


def test_document_page_takes_at_most_5_queries_and_shows_each_caller_their_controls(
    client, world, acme_document, django_assert_max_num_queries
):
    url = reverse("document-detail", args=[acme_document.uuid])
    client.force_login(world.alice)
    with django_assert_max_num_queries(5):
        owner_page = client.get(url)
    assert owner_page.status_code == 200
    assert owner_page.context["can_manage"] and owner_page.context["can_steer"]
    client.force_login(world.bob)
    with django_assert_max_num_queries(5):
        viewer_page = client.get(url)
    assert viewer_page.status_code == 200 and not viewer_page.context["can_steer"]
    client.logout()
    with django_assert_max_num_queries(5):
        keyed = client.get(f"{url}?key={acme_document.share_key}")
    assert keyed.status_code == 200 and not keyed.context["can_manage"]
    client.force_login(world.charlie)
    assert client.get(url).status_code == 404


def test_feed_page_takes_at_most_5_queries(client, world, acme_feed, django_assert_max_num_queries):
    url = reverse("feed-detail", args=[acme_feed.feed.uuid])
    client.force_login(world.alice)
    with django_assert_max_num_queries(5):
        owner_page = client.get(url)
    assert owner_page.status_code == 200 and owner_page.context["can_manage"]
    client.force_login(world.bob)
    with django_assert_max_num_queries(5):
        viewer_page = client.get(url)
    assert viewer_page.status_code == 200 and not viewer_page.context["can_manage"]
    client.force_login(world.charlie)
    assert client.get(url).status_code == 404
