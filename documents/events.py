"""Live events of documents: group names, frame shapes, and sending after commit.

This is the only module of the documents app that talks to the hub. A page
frame is encoded once, here, by the process that changed the shared state;
every viewer in every process receives those same bytes, with the document's
``state_seq`` as the hub item's sequence number.
"""

from __future__ import annotations

import uuid as uuid_module

from django.db import transaction

from documents.models import Document
from documents.tsv import TSVError
from streamsite import frames, hub
from streamsite.frames import encode


def document_group(document_uuid: uuid_module.UUID | str) -> str:
    return f"document.{document_uuid}"


def page_frame(
    document: Document, *, page_no: int, page_size: int, total_pages: int, rows: list[list[str]]
) -> frames.PageFrame:
    return frames.page(
        page_no=page_no,
        page_size=page_size,
        total_number=document.row_count,
        total_pages=total_pages,
        columns=document.columns,
        data=rows,
        version=document.version,
        state=document.state_seq,
    )


def uploaded_frame(document: Document, warnings: list[str]) -> frames.UploadedFrame:
    return frames.uploaded(
        version=document.version, row_count=document.row_count, warnings=warnings
    )


def invalid_tsv_frame(error: TSVError) -> frames.ErrorFrame:
    return frames.error(
        frames.ErrorCode.INVALID_TSV, error.message, reason=error.code, line=error.line
    )


def document_state_changed(document: Document, frame: frames.PageFrame) -> None:
    """Broadcast the new shared page to every viewer once the transaction commits."""
    item = (frame["state"], encode(frame))
    group = document_group(document.uuid)
    transaction.on_commit(lambda: hub.publish(group, [item]))
