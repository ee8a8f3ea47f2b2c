"""documents.services: new documents, new versions, the shared page, sharing."""

import json
from unittest import mock

import pytest

from documents import services
from documents.models import ROWS_PER_CHUNK, Document, DocumentChunk
from documents.selectors import PageOutOfRange, document_current_page
from documents.tsv import TSVError, TSVLimits
from tests.documents.conftest import BAD_CORPUS, CORPUS, numbers_tsv


@pytest.fixture
def published():
    """What reached the hub, once transactions commit: [(group, [(seq, frame dict)])]."""
    sent = []
    with mock.patch(
        "streamsite.hub.publish",
        side_effect=lambda group, items: sent.append(
            (group, [(seq, json.loads(text)) for seq, text in items])
        ),
    ):
        yield sent


def test_create_stores_the_rows_in_chunks_as_version_one(world):
    upload = services.document_create(
        tenant=world.acme, name="n", data=numbers_tsv(250), uploaded_by=world.alice
    )
    document = upload.document
    assert (document.version, document.row_count, document.columns) == (
        1,
        250,
        ["n", "square", "tag"],
    )
    chunks = DocumentChunk.objects.filter(document=document).order_by("chunk_no")
    rows = [json.loads(chunk.rows_json) for chunk in chunks]
    assert [len(r) for r in rows] == [ROWS_PER_CHUNK, ROWS_PER_CHUNK, 50]
    assert rows[2][-1] == ["250", "62500", ""]
    assert upload.frame["page_no"] == 1 and upload.frame["data"][0] == ["1", "1", ""]
    assert document.share_key is None and not document.share_can_steer


def test_create_with_a_share_mode_makes_a_key_that_is_not_the_uuid(world):
    follow = services.document_create(tenant=world.acme, name="a", data=b"x\n1\n", share="follow")
    steer = services.document_create(tenant=world.acme, name="b", data=b"x\n1\n", share="steer")
    assert follow.document.share_key and not follow.document.share_can_steer
    assert steer.document.share_key and steer.document.share_can_steer
    assert follow.document.share_key != steer.document.share_key
    assert str(follow.document.uuid) not in follow.document.share_key


def test_ragged_rows_are_stored_and_sent_as_given_and_reported(world):
    upload = services.document_create(tenant=world.acme, name="r", data=b"a\tb\tc\n1\n2\t3\t4\n")
    assert upload.frame["data"] == [["1"], ["2", "3", "4"]]
    assert document_current_page(upload.document.pk)["data"] == [["1"], ["2", "3", "4"]]
    assert upload.warnings == ["Line 2 had 1 of 3 fields; padded."]


def test_replace_makes_the_next_version_and_moves_everyone_to_its_first_page(
    acme_document, world, published, django_capture_on_commit_callbacks
):
    services.document_page_set(document=acme_document, page_no=3)
    with django_capture_on_commit_callbacks(execute=True):
        upload = services.document_replace(
            document=acme_document, data=numbers_tsv(120, tag="v2"), uploaded_by=world.bob
        )
    document = Document.objects.get(pk=acme_document.pk)
    assert (document.version, document.row_count, document.current_page) == (2, 120, 1)
    assert document.uploaded_by == world.bob
    (group, [(seq, frame)]) = published[-1]
    assert group == f"document.{acme_document.uuid}"
    assert seq == document.state_seq == frame["state"]
    assert frame == upload.frame
    assert (frame["version"], frame["page_no"], frame["total_pages"]) == (2, 1, 2)
    assert frame["data"][0] == ["1", "1", "v2"]


def test_replace_deletes_the_rows_of_the_previous_version(acme_document, world):
    services.document_replace(document=acme_document, data=numbers_tsv(3), uploaded_by=None)
    versions = set(
        DocumentChunk.objects.filter(document=acme_document).values_list("version", flat=True)
    )
    assert versions == {2}


def test_replace_touches_only_its_own_document(acme_document, globex_document):
    services.document_replace(document=acme_document, data=numbers_tsv(3), uploaded_by=None)
    globex_document.refresh_from_db()
    assert (globex_document.version, globex_document.row_count) == (1, 5)
    assert DocumentChunk.objects.filter(document=globex_document, version=1).count() == 1


@pytest.mark.parametrize("name", sorted(BAD_CORPUS))
def test_a_bad_file_leaves_the_current_version_untouched_and_notifies_no_one(
    acme_document, world, published, django_capture_on_commit_callbacks, settings, name
):
    expected = BAD_CORPUS[name]
    limits = TSVLimits(**{"max_bytes": settings.DOCUMENT_MAX_BYTES, **expected["limits"]})
    before = document_current_page(acme_document.pk)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(TSVError) as caught:
        services.document_replace(
            document=acme_document,
            data=(CORPUS / "bad" / name).read_bytes(),
            uploaded_by=world.alice,
            limits=limits,
        )
    assert (caught.value.code, caught.value.line) == (expected["code"], expected["line"])
    assert document_current_page(acme_document.pk) == before
    assert DocumentChunk.objects.filter(document=acme_document).exclude(version=1).count() == 0
    assert published == []


def test_the_size_limit_is_the_document_max_bytes_setting(acme_document, settings):
    settings.DOCUMENT_MAX_BYTES = 64
    with pytest.raises(TSVError) as caught:
        services.document_replace(document=acme_document, data=numbers_tsv(10), uploaded_by=None)
    assert caught.value.code == "too_large"
    assert Document.objects.get(pk=acme_document.pk).version == 1


def test_page_set_moves_the_shared_page_and_publishes_it_once(
    acme_document, published, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        frame = services.document_page_set(document=acme_document, page_no=3)
    assert (frame["page_no"], frame["total_pages"], len(frame["data"])) == (3, 3, 50)
    assert frame["data"][0] == ["201", "40401", "v1"]
    assert published == [(f"document.{acme_document.uuid}", [(frame["state"], frame)])]
    assert document_current_page(acme_document.pk) == frame


def test_every_change_adds_one_to_the_state(acme_document):
    start = acme_document.state_seq
    states = [
        services.document_page_set(document=acme_document, page_no=2)["state"],
        services.document_page_set(document=acme_document, page_no=2)["state"],
        services.document_replace(document=acme_document, data=b"x\n1\n", uploaded_by=None).frame[
            "state"
        ],
        services.document_page_set(document=acme_document, page_no=1)["state"],
    ]
    assert states == [start + 1, start + 2, start + 3, start + 4]


@pytest.mark.parametrize("page_no", [0, -1, 4, 10**9])
def test_page_set_out_of_range_changes_nothing_and_publishes_nothing(
    acme_document, published, django_capture_on_commit_callbacks, page_no
):
    before = document_current_page(acme_document.pk)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(PageOutOfRange):
        services.document_page_set(document=acme_document, page_no=page_no)
    assert document_current_page(acme_document.pk) == before
    assert published == []


def test_share_can_be_changed_rotated_and_revoked(acme_document):
    key = acme_document.share_key
    services.document_share_set(document=acme_document, share="steer")
    assert acme_document.share_key == key and acme_document.share_can_steer
    new_key = services.document_share_key_rotate(document=acme_document)
    assert new_key != key
    services.document_share_set(document=acme_document, share=None)
    acme_document.refresh_from_db()
    assert acme_document.share_key is None and not acme_document.share_can_steer
