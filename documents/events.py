"""Live events of documents: group names, frame shapes, and sending after commit.

This is the only module of the documents app that talks to the hub. A page
frame is encoded once, here, by the process that changed the shared state;
every viewer in every process receives those same bytes, with the document's
``state_seq`` as the hub item's sequence number.
"""

from __future__ import annotations

import uuid as uuid_module
from typing import Literal, TypedDict

from django.db import transaction

from documents.models import Document
from documents.tsv import TSVError
from streamsite import hub
from streamsite.live import encode


class PageFrame(TypedDict):
    type: Literal["page"]
    page_no: int
    page_size: int
    total_number: int
    total_pages: int
    columns: list[str]
    data: list[list[str]]
    version: int
    state: int


class UploadedFrame(TypedDict):
    type: Literal["uploaded"]
    version: int
    row_count: int
    warnings: list[str]


def document_group(document_uuid: uuid_module.UUID | str) -> str:
    return f"document.{document_uuid}"


def page_frame(
    document: Document, *, page_no: int, page_size: int, total_pages: int, rows: list[list[str]]
) -> PageFrame:
    return {
        "type": "page",
        "page_no": page_no,
        "page_size": page_size,
        "total_number": document.row_count,
        "total_pages": total_pages,
        "columns": document.columns,
        "data": rows,
        "version": document.version,
        "state": document.state_seq,
    }


def uploaded_frame(document: Document, warnings: list[str]) -> UploadedFrame:
    return {
        "type": "uploaded",
        "version": document.version,
        "row_count": document.row_count,
        "warnings": warnings,
    }


def invalid_tsv_frame(error: TSVError) -> dict[str, object]:
    return {
        "type": "error",
        "error": "invalid_tsv",
        "reason": error.code,
        "line": error.line,
        "message": error.message,
    }


def document_state_changed(document: Document, frame: PageFrame) -> None:
    """Broadcast the new shared page to every viewer once the transaction commits."""
    item = (frame["state"], encode(frame))
    group = document_group(document.uuid)
    transaction.on_commit(lambda: hub.publish(group, [item]))
