"""Writes to documents: new documents, new versions, the shared page, sharing.

Every change of the shared state (a page turn, a new version) takes the
document's row lock (``SELECT … FOR UPDATE``; SQLite runs ``BEGIN IMMEDIATE``),
adds one to ``state_seq`` and publishes the resulting page frame after commit.
Because the lock serialises the changes, ``state_seq`` orders them, and a
viewer that keeps only frames newer than the last it sent ends on the
database's (version, page) whatever order the broadcasts arrive in.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Literal

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from documents import events, selectors
from documents.models import ROWS_PER_CHUNK, Document, DocumentChunk
from documents.parsing import pack_upload
from documents.tsv import PackedTSV, TSVLimits
from streamsite import frames
from streamsite.control import access_changed
from tenants import quotas
from tenants.models import Tenant
from tenants.services import Actor, audit_record, shared_object_settings_update

ShareMode = Literal["follow", "steer"]
# Chunks per INSERT: ~100 rows each, so a batch is a few hundred kB of JSON.
_INSERT_BATCH = 100


@dataclass(frozen=True)
class DocumentUpload:
    """The document after an upload, the page everyone now sees, and what was changed."""

    document: Document
    frame: frames.PageFrame
    warnings: list[str]


def upload_limits() -> TSVLimits:
    return TSVLimits(max_bytes=settings.DOCUMENT_MAX_BYTES)


def document_create(
    *,
    tenant: Tenant,
    name: str,
    data: bytes,
    uploaded_by: User | None = None,
    share: ShareMode | None = None,
    limits: TSVLimits | None = None,
) -> DocumentUpload:
    """Parse ``data`` and store it as version 1 of a new document.

    Raises ``documents.tsv.TSVError`` for a file that cannot be read; nothing
    is stored then. ``share`` gives the document a share key for following
    ("follow") or also steering and uploading ("steer"). Raises
    ``tenants.quotas.QuotaExceeded`` (nothing stored, nothing parsed) when the
    tenant has max_documents or the file would take it over max_stored_bytes.
    """
    quotas.check_document_create(tenant, lock=False)
    quotas.check_stored_bytes(tenant, adding=len(data))
    parsed = _parse(data, limits)
    with transaction.atomic():
        quotas.check_document_create(tenant)
        document = Document.objects.create(
            tenant=tenant,
            name=name,
            version=1,
            row_count=parsed.row_count,
            columns=parsed.columns,
            uploaded_by=uploaded_by,
            uploaded_at=timezone.now(),
            share_key=secrets.token_urlsafe(24) if share else None,
            share_can_steer=share == "steer",
            current_page=1,
            state_seq=1,
            stored_bytes=sum(map(len, parsed.packs)),
        )
        _insert_chunks(document, parsed)
    return DocumentUpload(document, _first_page(document, parsed), parsed.warnings)


def document_replace(
    *,
    document: Document,
    data: bytes,
    uploaded_by: User | None,
    limits: TSVLimits | None = None,
) -> DocumentUpload:
    """Make ``data`` the document's next version; every viewer moves to its page 1.

    The file is parsed before anything is locked or written: a file that
    cannot be read raises ``documents.tsv.TSVError`` and leaves the current
    version untouched, and nobody is notified. The previous version's rows are
    deleted in the same transaction that switches the version.

    Memory: the file, its decoded text and its rows as chunk JSON (see
    ``_parse``), whatever the shape of its rows.
    """
    parsed = _parse(data, limits)
    with transaction.atomic():
        locked = Document.objects.select_for_update().get(pk=document.pk)
        locked.version += 1
        locked.row_count = parsed.row_count
        locked.columns = parsed.columns
        locked.uploaded_by = uploaded_by
        locked.uploaded_at = timezone.now()
        locked.current_page = 1
        locked.state_seq += 1
        locked.stored_bytes = sum(map(len, parsed.packs))
        _insert_chunks(locked, parsed)
        DocumentChunk.objects.filter(document_id=locked.pk, version__lt=locked.version).delete()
        locked.save(
            update_fields=[
                "version",
                "row_count",
                "columns",
                "uploaded_by",
                "uploaded_at",
                "current_page",
                "state_seq",
                "stored_bytes",
            ]
        )
        frame = _first_page(locked, parsed)
        events.document_state_changed(locked, frame)
    return DocumentUpload(locked, frame, parsed.warnings)


def document_page_set(*, document: Document, page_no: int) -> frames.PageFrame:
    """Move every viewer of the document to page ``page_no`` (1-based) of its current version.

    Raises ``selectors.PageOutOfRange`` (nothing changes) when the current
    version has no such page.
    """
    with transaction.atomic():
        locked = Document.objects.select_for_update().get(pk=document.pk)
        last = selectors.page_count(locked.row_count, selectors.page_size())
        if not 1 <= page_no <= last:
            raise selectors.PageOutOfRange(f"page_no must be between 1 and {last}")
        locked.current_page = page_no
        locked.state_seq += 1
        locked.save(update_fields=["current_page", "state_seq"])
        frame = selectors.document_page(locked, page_no)
        events.document_state_changed(locked, frame)
    return frame


def document_rename(*, document: Document, name: str) -> Document:
    document.name = name
    document.save(update_fields=["name"])
    return document


@transaction.atomic
def document_share_set(
    *, document: Document, share: ShareMode | None, actor: Actor = None
) -> Document:
    """Share by key (follow only, or steer and upload too), or revoke the key (None).

    An existing key is kept when only the mode changes; revoking and sharing
    again gives a new key. Followers using a revoked key are disconnected.
    """
    if share is None:
        document.share_key = None
        document.share_can_steer = False
    else:
        document.share_key = document.share_key or secrets.token_urlsafe(24)
        document.share_can_steer = share == "steer"
    document.save(update_fields=["share_key", "share_can_steer"])
    action = "document.share_key_revoked" if share is None else f"document.shared_{share}"
    audit_record(actor=actor, tenant=document.tenant, action=action, target=document)
    access_changed(tenant_uuid=document.tenant.uuid, object_uuid=document.uuid)
    return document


@transaction.atomic
def document_share_key_rotate(*, document: Document, actor: Actor = None) -> str:
    """A new share key; the old one stops opening the document and its followers are cut off."""
    document.share_key = secrets.token_urlsafe(24)
    document.save(update_fields=["share_key"])
    audit_record(
        actor=actor, tenant=document.tenant, action="document.share_key_rotated", target=document
    )
    access_changed(tenant_uuid=document.tenant.uuid, object_uuid=document.uuid)
    return document.share_key


def document_share_key_revoke(*, document: Document, actor: Actor = None) -> None:
    document_share_set(document=document, share=None, actor=actor)


def _parse(data: bytes, limits: TSVLimits | None) -> PackedTSV:
    """Parse an upload straight into the JSON text of its chunks.

    Rows are stored as the file gives them (a short row is not padded to the
    header), and only ROWS_PER_CHUNK of them exist as Python lists at a time:
    what an upload holds is the file, its decoded text and the chunk JSON
    (about the file's size; at most 6x for a file of control characters,
    which JSON writes as \\u00XX), not rows x columns.
    """
    # In a worker process (documents/parsing.py): the CPU of a parse must not
    # be taken from the server's event loop, which serves every tenant.
    return pack_upload(data, rows_per_pack=ROWS_PER_CHUNK, limits=limits or upload_limits())


def _insert_chunks(document: Document, parsed: PackedTSV) -> None:
    # bulk_create would build every DocumentChunk of the version at once; a
    # batch at a time keeps only the JSON texts, which `parsed` holds anyway.
    packs = parsed.packs
    for first in range(0, len(packs), _INSERT_BATCH):
        DocumentChunk.objects.bulk_create(
            DocumentChunk(
                document_id=document.pk,
                version=document.version,
                chunk_no=number,
                rows_json=packs[number],
            )
            for number in range(first, min(first + _INSERT_BATCH, len(packs)))
        )


def _first_page(document: Document, parsed: PackedTSV) -> frames.PageFrame:
    # Built from the parsed chunks: no need to read back what was just written.
    size = selectors.page_size()
    rows: list[list[str]] = []
    for text in parsed.packs[: -(-size // ROWS_PER_CHUNK)]:
        rows.extend(json.loads(text))
    return events.page_frame(
        document,
        page_no=1,
        page_size=size,
        total_pages=selectors.page_count(parsed.row_count, size),
        rows=rows[:size],
    )


DOCUMENT_SETTINGS = ("name", "allowed_origins")


@transaction.atomic
def document_settings_update(
    *, document: Document, actor: Actor = None, **changes: str
) -> list[str]:
    """Change some of DOCUMENT_SETTINGS (the admin's form); returns the names that changed
    (see tenants.services.shared_object_settings_update)."""
    return shared_object_settings_update(
        obj=document,
        allowed=DOCUMENT_SETTINGS,
        action="document.changed",
        actor=actor,
        changes=changes,
    )


@transaction.atomic
def document_delete(*, document: Document, actor: Actor = None) -> None:
    """Delete the document and its rows; everyone watching it is told and disconnected (4403)."""
    tenant, document_uuid = document.tenant, document.uuid
    audit_record(
        actor=actor,
        tenant=tenant,
        action="document.deleted",
        target=document,
        details={"name": document.name, "version": document.version},
    )
    document.delete()
    # After the commit, open sockets re-check and find nothing to watch.
    access_changed(tenant_uuid=tenant.uuid, object_uuid=document_uuid)
