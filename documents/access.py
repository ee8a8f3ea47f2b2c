"""The one place that decides who may follow, steer, upload to or manage a document.

Every view, consumer and command goes through these helpers. They return None
for "no such document" and "not yours" alike, so a stranger learns nothing from
a UUID: HTTP turns None into 404, WebSockets into a refused handshake or a
``forbidden`` error frame.

- follow (see the shared page): members of the tenant; holders of the share key.
- steer (turn pages) and upload (new versions): owners and editors; holders of
  the share key when the owner allowed it (``share_can_steer``).
- manage (share settings): owners.

``foreign_origin`` is the Origin of a cross-site WebSocket (see
streamsite.security): its cookies were stripped, so only a share key counts,
and only if the owner listed that origin.
"""

from __future__ import annotations

import uuid as uuid_module
from dataclasses import dataclass

from documents.models import Document
from tenants.access import Capabilities, get_or_none, with_caller_role


@dataclass(frozen=True, slots=True)
class DocumentAccess:
    """A document and everything the caller may do with it (one query).

    ``may.view``: follow and export; ``may.publish``: steer and upload;
    ``may.manage``: share settings.
    """

    document: Document
    may: Capabilities

    @property
    def can_steer(self) -> bool:
        return self.may.publish

    @property
    def can_upload(self) -> bool:
        # The same people as for steering, today; one place to let them diverge.
        return self.may.publish


def document_access(
    user,
    document_uuid: uuid_module.UUID | str,
    *,
    key: str | None = None,
    foreign_origin: str | None = None,
) -> DocumentAccess | None:
    """The document and the caller's capabilities, or None if the caller may not follow it."""
    document = get_or_none(
        with_caller_role(Document.objects.select_related("tenant"), user), uuid=document_uuid
    )
    if document is None:
        return None
    may = Capabilities.decide(
        document,
        getattr(document, "caller_role", None),  # with_caller_role
        key=key,
        foreign_origin=foreign_origin,
        key_may_publish=document.share_can_steer,
    )
    return DocumentAccess(document, may) if may.view else None


def document_for_viewer(
    user,
    document_uuid: uuid_module.UUID | str,
    *,
    key: str | None = None,
    foreign_origin: str | None = None,
) -> Document | None:
    """The document if the user may follow it: a member, or the holder of its share key."""
    found = document_access(user, document_uuid, key=key, foreign_origin=foreign_origin)
    return found.document if found is not None else None


def document_for_steerer(
    user,
    document_uuid: uuid_module.UUID | str,
    *,
    key: str | None = None,
    foreign_origin: str | None = None,
) -> Document | None:
    """The document if the user may turn its shared page."""
    found = document_access(user, document_uuid, key=key, foreign_origin=foreign_origin)
    return found.document if found is not None and found.can_steer else None


def document_for_uploader(
    user,
    document_uuid: uuid_module.UUID | str,
    *,
    key: str | None = None,
    foreign_origin: str | None = None,
) -> Document | None:
    """The document if the user may upload a new version of it."""
    found = document_access(user, document_uuid, key=key, foreign_origin=foreign_origin)
    return found.document if found is not None and found.can_upload else None


def document_for_manager(user, document_uuid: uuid_module.UUID | str) -> Document | None:
    """The document if the user may change how it is shared (owners; never by key)."""
    found = document_access(user, document_uuid)
    return found.document if found is not None and found.may.manage else None
