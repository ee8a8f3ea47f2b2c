"""Per-tenant quotas on what a tenant creates and stores (tenants/quotas.py).

Every refusal names the limit, changes nothing, and leaves the neighbour
tenant (globex) free to do the same thing at the same moment.
"""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from documents.models import Document
from documents.services import document_create
from streams.models import Feed, FeedKind
from streams.services import feed_create
from tenants import quotas
from tests.documents.conftest import numbers_tsv


def test_a_tenant_at_max_feeds_is_refused_naming_the_limit_and_the_neighbour_creates(world):
    world.acme.quota_max_feeds = 2
    world.acme.save()
    for name in ("one", "two"):
        feed_create(tenant=world.acme, name=name)

    with pytest.raises(quotas.QuotaExceeded) as refused:
        feed_create(tenant=world.acme, name="three", kind=FeedKind.NUMERIC)

    assert refused.value.limit == "max_feeds"
    assert refused.value.status == 429
    assert "2" in refused.value.message and "max_feeds" in refused.value.message
    assert Feed.objects.filter(tenant=world.acme).count() == 2
    assert not world.acme.audit_entries.filter(target_repr__startswith="three").exists()
    feed_create(tenant=world.globex, name="three")  # same name, other tenant: its own quota


def test_the_default_feed_quota_comes_from_the_setting(world, settings):
    settings.QUOTA_MAX_FEEDS = 1
    feed_create(tenant=world.acme, name="only")

    with pytest.raises(quotas.QuotaExceeded):
        feed_create(tenant=world.acme, name="second")
    world.acme.quota_max_feeds = 5  # a tenant's own quota overrides the default
    world.acme.save()
    feed_create(tenant=world.acme, name="second")
    assert quotas.limit_for(world.globex, "max_feeds") == 1


def test_a_tenant_at_max_documents_is_refused_before_parsing_and_the_neighbour_uploads(world):
    world.acme.quota_max_documents = 1
    world.acme.save()
    document_create(tenant=world.acme, name="first", data=numbers_tsv(5))

    with pytest.raises(quotas.QuotaExceeded) as refused:
        # Not even valid TSV: the quota answers before the file is read.
        document_create(tenant=world.acme, name="second", data=b"\x00\x01binary")

    assert refused.value.limit == "max_documents"
    assert Document.objects.filter(tenant=world.acme).count() == 1
    document_create(tenant=world.globex, name="second", data=numbers_tsv(5))


def test_stored_bytes_count_document_rows_and_kept_samples(world, acme_feed):
    before = quotas.stored_bytes(world.acme)
    document_create(tenant=world.acme, name="rows", data=numbers_tsv(100))
    with_document = quotas.stored_bytes(world.acme)
    Feed.objects.filter(pk=acme_feed.feed.pk).update(last_seq=1_000_000, retention_count=10)

    assert with_document - before > len(numbers_tsv(100)) // 2
    # Only what retention keeps counts: 10 samples, not a million.
    assert quotas.stored_bytes(world.acme) == with_document + 10 * quotas.BYTES_PER_SAMPLE
    assert quotas.stored_bytes(world.globex) == 0


def test_a_document_over_max_stored_bytes_is_refused_with_413_and_nothing_stored(world):
    data = numbers_tsv(2000)
    world.acme.quota_max_stored_bytes = len(data) - 1
    world.acme.save()

    with pytest.raises(quotas.QuotaExceeded) as refused:
        document_create(tenant=world.acme, name="big", data=data)

    assert (refused.value.limit, refused.value.status) == ("max_stored_bytes", 413)
    assert not Document.objects.filter(tenant=world.acme).exists()
    document_create(tenant=world.globex, name="big", data=data)


def test_replacing_a_document_counts_its_new_size_not_both_versions(world):
    first = document_create(tenant=world.acme, name="doc", data=numbers_tsv(1000)).document
    world.acme.quota_max_stored_bytes = quotas.stored_bytes(world.acme) + 10
    world.acme.save()

    # Its own current rows are replaced, so a same-size version still fits ...
    quotas.check_stored_bytes(world.acme, adding=len(numbers_tsv(1000)), replacing_id=first.pk)
    # ... while the same bytes as a second document would not.
    with pytest.raises(quotas.QuotaExceeded):
        quotas.check_stored_bytes(world.acme, adding=len(numbers_tsv(1000)))


def test_createfeed_over_quota_fails_with_a_command_error_naming_the_limit(world):
    world.acme.quota_max_feeds = 1
    world.acme.save()
    out = io.StringIO()

    with pytest.raises(CommandError, match="max_feeds"):
        call_command("createfeed", "--tenant", "acme", "--name", "n", "--count", "3", stdout=out)

    assert Feed.objects.filter(tenant=world.acme).count() == 1
    assert out.getvalue().count("Created feed") == 1


def test_importtsv_over_quota_fails_with_a_command_error_naming_the_limit(world, tmp_path):
    path = tmp_path / "numbers.tsv"
    path.write_bytes(numbers_tsv(50))
    world.acme.quota_max_documents = 0
    world.acme.save()

    with pytest.raises(CommandError, match="max_documents"):
        call_command("importtsv", str(path), "--tenant", "acme", stdout=io.StringIO())

    assert not Document.objects.filter(tenant=world.acme).exists()
    call_command("importtsv", str(path), "--tenant", "globex", stdout=io.StringIO())
    assert Document.objects.filter(tenant=world.globex).count() == 1


def test_importtsv_waits_for_no_one_when_the_tenant_holds_every_upload_slot(world, tmp_path):
    path = tmp_path / "numbers.tsv"
    path.write_bytes(numbers_tsv(50))
    held = [quotas.claim_slot(world.acme, "concurrent_uploads") for _ in range(2)]
    try:
        with pytest.raises(CommandError, match="concurrent_uploads"):
            call_command("importtsv", str(path), "--tenant", "acme", stdout=io.StringIO())
        call_command("importtsv", str(path), "--tenant", "globex", stdout=io.StringIO())
    finally:
        for lease in held:
            lease.release_sync()
    call_command("importtsv", str(path), "--tenant", "acme", stdout=io.StringIO())
    assert Document.objects.filter(tenant=world.acme).count() == 1


def test_usage_reports_every_quota_against_its_limit(world, acme_feed):
    world.acme.quota_max_feeds = 7
    world.acme.save()
    lease = quotas.claim_slot(world.acme, "concurrent_exports")
    try:
        usage = {u.name: (u.used, u.limit) for u in quotas.usage(world.acme)}
    finally:
        lease.release_sync()

    assert list(usage) == list(quotas.QUOTAS)
    assert usage["max_feeds"] == (1, 7)
    assert usage["max_documents"] == (0, 100)
    assert usage["concurrent_exports"] == (1, 2)
    assert usage["concurrent_uploads"] == (0, 2)
    assert usage["samples_per_second"] == (0, 10_000)


def test_a_documents_stored_bytes_follow_its_current_version(world):
    from documents.models import DocumentChunk
    from documents.services import document_replace

    def stored_rows(document) -> int:
        chunks = DocumentChunk.objects.filter(document=document, version=document.version)
        return sum(len(chunk.rows_json) for chunk in chunks)

    document = document_create(tenant=world.acme, name="d", data=numbers_tsv(500)).document
    assert document.stored_bytes == stored_rows(document) > 0
    smaller = document_replace(document=document, data=numbers_tsv(20), uploaded_by=None).document
    assert smaller.stored_bytes == stored_rows(smaller) < document.stored_bytes
    assert quotas.stored_bytes(world.acme) == smaller.stored_bytes
