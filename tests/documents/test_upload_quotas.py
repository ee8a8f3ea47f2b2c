"""Uploads and exports within the tenant's quotas, over HTTP and on the document socket.

A tenant holding all its concurrent_uploads (or exports) slots is answered
429 naming the limit, nothing changes, and the neighbour tenant's upload or
export at the same moment goes through.
"""

from __future__ import annotations

import contextlib

import pytest
from django.urls import reverse

from documents.models import Document
from documents.services import document_create
from tenants import quotas
from tests.conftest import session_cookie_for
from tests.documents.conftest import numbers_tsv
from tests.documents.test_views import JSON, signed_in, tsv_file, upload_url, version_of
from tests.streams.wsclient import communicator, receive


def hold_every_slot(tenant, name: str) -> list:
    """The tenant's uploads (or exports) all running, as if from other requests or processes."""
    return [quotas.claim_slot(tenant, name) for _ in range(quotas.limit_for(tenant, name))]


def release(leases: list) -> None:
    for lease in leases:
        lease.release_sync()


@contextlib.contextmanager
def every_slot_held(tenant, name: str):
    leases = hold_every_slot(tenant, name)
    try:
        yield
    finally:
        release(leases)


@pytest.fixture
def globex_numbers(world) -> Document:
    return document_create(tenant=world.globex, name="g", data=numbers_tsv(10)).document


def test_an_upload_beyond_concurrent_uploads_is_429_and_the_neighbour_uploads(
    world, acme_document, globex_numbers
):
    with every_slot_held(world.acme, "concurrent_uploads"):
        refused = signed_in(world.alice).post(
            upload_url(acme_document), {"file": tsv_file(numbers_tsv(3))}, headers=JSON
        )
        neighbour = signed_in(world.charlie).post(
            upload_url(globex_numbers), {"file": tsv_file(numbers_tsv(3))}, headers=JSON
        )

    assert refused.status_code == 429
    body = refused.json()
    assert (body["type"], body["error"], body["limit"]) == (
        "error",
        "quota_exceeded",
        "concurrent_uploads",
    )
    assert "2" in body["message"]
    assert version_of(acme_document) == 1
    assert neighbour.status_code == 200 and version_of(globex_numbers) == 2
    # Once one is done, the tenant uploads again.
    again = signed_in(world.alice).post(
        upload_url(acme_document), {"file": tsv_file(numbers_tsv(3))}, headers=JSON
    )
    assert again.status_code == 200 and version_of(acme_document) == 2


def test_a_plain_form_upload_over_quota_shows_the_limit_on_the_page(world, acme_document):
    with every_slot_held(world.acme, "concurrent_uploads"):
        page = signed_in(world.alice).post(
            upload_url(acme_document), {"file": tsv_file(numbers_tsv(3))}
        )
    assert page.status_code == 429 and "concurrent_uploads" in page.content.decode()
    assert version_of(acme_document) == 1


def test_creating_a_document_takes_an_upload_slot_too(world):
    url = reverse("document-list")
    form = {"tenant": world.acme.pk, "name": "new", "file": tsv_file(numbers_tsv(3))}
    with every_slot_held(world.acme, "concurrent_uploads"):
        refused = signed_in(world.alice).post(url, form, headers=JSON)
        page = signed_in(world.alice).post(
            url, {**form, "file": tsv_file(numbers_tsv(3))}
        )  # the form, again, with the error
    assert refused.status_code == 429 and refused.json()["limit"] == "concurrent_uploads"
    assert page.status_code == 429 and "concurrent_uploads" in page.content.decode()
    assert not Document.objects.filter(tenant=world.acme).exists()


def test_an_upload_over_max_stored_bytes_is_413_and_keeps_the_version(
    world, acme_document, globex_numbers
):
    world.acme.quota_max_stored_bytes = quotas.stored_bytes(world.acme) + 100
    world.acme.save()
    globex = world.globex
    globex.quota_max_stored_bytes = world.acme.quota_max_stored_bytes
    globex.save()
    data = numbers_tsv(2000)

    refused = signed_in(world.alice).post(
        upload_url(acme_document), {"file": tsv_file(data)}, headers=JSON
    )

    assert refused.status_code == 413
    assert (refused.json()["error"], refused.json()["limit"]) == (
        "quota_exceeded",
        "max_stored_bytes",
    )
    assert version_of(acme_document) == 1
    # A small new version, replacing the rows there are, still fits.
    small = signed_in(world.alice).post(
        upload_url(acme_document), {"file": tsv_file(numbers_tsv(20))}, headers=JSON
    )
    assert small.status_code == 200


def test_an_export_beyond_concurrent_exports_is_429_and_the_neighbour_exports(
    world, acme_document, globex_numbers
):
    acme_url = reverse("document-export", args=[acme_document.uuid])
    globex_url = reverse("document-export", args=[globex_numbers.uuid])
    with every_slot_held(world.acme, "concurrent_exports"):
        refused = signed_in(world.bob).get(acme_url)
        neighbour = signed_in(world.charlie).get(globex_url)

    assert refused.status_code == 429
    assert (refused.json()["error"], refused.json()["limit"]) == (
        "quota_exceeded",
        "concurrent_exports",
    )
    assert neighbour.status_code == 200
    assert b"".join(neighbour.streaming_content).startswith(b"n\tsquare")
    # An export frees its slot when it is sent: the tenant can export any number in turn.
    for _ in range(3):
        export = signed_in(world.bob).get(acme_url)
        assert export.status_code == 200 and b"".join(export.streaming_content)
    assert {u.name: u.used for u in quotas.usage(world.acme)}["concurrent_exports"] == 0


@pytest.mark.django_db(transaction=True)
async def test_a_socket_upload_over_quota_gets_an_error_frame_and_the_socket_stays_open(
    world, acme_document
):
    from channels.db import database_sync_to_async

    cookie = await database_sync_to_async(session_cookie_for)(world.alice)
    comm = communicator(f"/ws/documents/{acme_document.uuid}/", cookie=cookie)
    connected, _ = await comm.connect()
    assert connected and (await receive(comm))["type"] == "page"
    leases = await database_sync_to_async(hold_every_slot)(world.acme, "concurrent_uploads")
    try:
        await comm.send_to(bytes_data=numbers_tsv(5))
        error = await receive(comm)
    finally:
        await database_sync_to_async(release)(leases)

    assert (error["type"], error["error"], error["limit"]) == (
        "error",
        "quota_exceeded",
        "concurrent_uploads",
    )
    await comm.send_to(bytes_data=numbers_tsv(5))  # the slot is free again: it goes through
    page = await receive(comm)
    assert (page["type"], page["version"]) == ("page", 2)
    await comm.disconnect()
