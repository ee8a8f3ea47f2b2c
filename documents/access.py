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

from django.core.exceptions import ValidationError

from documents.models import Document
from tenants.access import MANAGE_ROLES, PUBLISH_ROLES, VIEW_ROLES, role_in, share_key_opens


def _document(document_uuid: uuid_module.UUID | str) -> Document | None:
    try:
        return Document.objects.select_related("tenant").get(uuid=document_uuid)
    except (Document.DoesNotExist, ValueError, ValidationError):
        return None


def _member_may(user, document: Document, roles: frozenset, foreign_origin: str | None) -> bool:
    return not foreign_origin and role_in(user, document.tenant_id) in roles


def document_for_viewer(
    user,
    document_uuid: uuid_module.UUID | str,
    *,
    key: str | None = None,
    foreign_origin: str | None = None,
) -> Document | None:
    """The document if the user may follow it: a member, or the holder of its share key."""
    document = _document(document_uuid)
    if document is None:
        return None
    if _member_may(user, document, VIEW_ROLES, foreign_origin):
        return document
    if share_key_opens(document, key, foreign_origin):
        return document
    return None


def document_for_steerer(
    user,
    document_uuid: uuid_module.UUID | str,
    *,
    key: str | None = None,
    foreign_origin: str | None = None,
) -> Document | None:
    """The document if the user may turn its shared page."""
    document = _document(document_uuid)
    if document is None:
        return None
    if _member_may(user, document, PUBLISH_ROLES, foreign_origin):
        return document
    if document.share_can_steer and share_key_opens(document, key, foreign_origin):
        return document
    return None


def document_for_uploader(
    user,
    document_uuid: uuid_module.UUID | str,
    *,
    key: str | None = None,
    foreign_origin: str | None = None,
) -> Document | None:
    """The document if the user may upload a new version of it.

    The same people as for steering, today; a separate helper so that callers
    say which capability they check, and the two can diverge in one place.
    """
    return document_for_steerer(user, document_uuid, key=key, foreign_origin=foreign_origin)


def document_for_manager(user, document_uuid: uuid_module.UUID | str) -> Document | None:
    """The document if the user may change how it is shared (owners; never by key)."""
    document = _document(document_uuid)
    if document is not None and role_in(user, document.tenant_id) in MANAGE_ROLES:
        return document
    return None
