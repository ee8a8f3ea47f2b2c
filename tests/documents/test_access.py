"""documents.access: who may follow, steer, upload and manage."""

import pytest

from documents.access import (
    document_for_manager,
    document_for_steerer,
    document_for_uploader,
    document_for_viewer,
)
from documents.services import document_share_set


def capabilities(user, document, *, key=None, foreign_origin=None):
    helpers = {
        "follow": document_for_viewer,
        "steer": document_for_steerer,
        "upload": document_for_uploader,
    }
    return {
        name
        for name, helper in helpers.items()
        if helper(user, document.uuid, key=key, foreign_origin=foreign_origin) is not None
    }


def test_owners_and_editors_steer_and_upload_viewers_follow(world, acme_document):
    from tenants.models import Role
    from tenants.services import membership_set

    everything = {"follow", "steer", "upload"}
    assert capabilities(world.alice, acme_document) == everything
    assert capabilities(world.bob, acme_document) == {"follow"}
    membership_set(tenant=world.acme, user=world.bob, role=Role.EDITOR)
    assert capabilities(world.bob, acme_document) == everything


def test_stranger_gets_nothing_even_with_the_exact_uuid(world, acme_document):
    assert capabilities(world.charlie, acme_document) == set()
    assert document_for_manager(world.charlie, acme_document.uuid) is None


def test_anonymous_without_key_gets_nothing(world, acme_document):
    from django.contrib.auth.models import AnonymousUser

    assert capabilities(AnonymousUser(), acme_document) == set()
    assert capabilities(None, acme_document) == set()


def test_share_key_follows_or_steers_as_the_owner_chose(world, acme_document):
    key = acme_document.share_key
    assert capabilities(None, acme_document, key=key) == {"follow"}
    assert capabilities(world.charlie, acme_document, key=key) == {"follow"}
    document_share_set(document=acme_document, share="steer")
    assert capabilities(None, acme_document, key=key) == {"follow", "steer", "upload"}


def test_wrong_revoked_or_other_documents_key_opens_nothing(world, acme_document, globex_document):
    assert capabilities(None, acme_document, key="guess") == set()
    assert capabilities(None, acme_document, key=globex_document.share_key) == set()
    assert capabilities(None, acme_document, key=str(acme_document.uuid)) == set()
    key = acme_document.share_key
    document_share_set(document=acme_document, share=None)
    assert capabilities(None, acme_document, key=key) == set()


def test_foreign_origin_needs_the_key_and_an_allowed_origin(world, acme_document):
    key = acme_document.share_key
    partner = "https://partner.example"
    # A member's session never counts from a foreign page (OriginGate also strips it).
    assert capabilities(world.alice, acme_document, foreign_origin=partner) == set()
    assert capabilities(None, acme_document, key=key, foreign_origin=partner) == set()
    acme_document.allowed_origins = "https://partner.example/\n"
    acme_document.save()
    assert capabilities(None, acme_document, key=key, foreign_origin=partner) == {"follow"}
    assert (
        capabilities(None, acme_document, key=key, foreign_origin="https://evil.example") == set()
    )


def test_only_owners_manage_and_never_by_key(world, acme_document):
    assert document_for_manager(world.alice, acme_document.uuid) == acme_document
    assert document_for_manager(world.bob, acme_document.uuid) is None


@pytest.mark.parametrize("bad_uuid", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_unknown_or_malformed_uuid_is_none(world, bad_uuid):
    assert document_for_viewer(world.alice, bad_uuid) is None
