"""WebSocket consumer of documents: follow the shared page, steer it, upload versions."""

from __future__ import annotations

import json
import logging
from typing import Any

import redis
from channels.db import database_sync_to_async
from django.conf import settings

from documents import access, events, selectors, services
from documents.models import Document
from documents.parsing import ParserUnavailable
from documents.tsv import TSVError
from streams.consumers import viewer_details
from streamsite.control import AccessWatch, Credential, session_key_of, user_now
from streamsite.frames import ErrorCode, encode, error_frame
from streamsite.hub import Hub, Item
from streamsite.live import LiveConsumer
from streamsite.presence import Presence, presence_frame
from tenants import quotas

log = logging.getLogger(__name__)

# A page request is a few dozen characters; anything much larger is not one,
# and decoding it would hold up the event loop for nothing.
MAX_TEXT_FRAME = 4096

_viewer_document = database_sync_to_async(access.document_for_viewer)
_steerer_document = database_sync_to_async(access.document_for_steerer)
_uploader_document = database_sync_to_async(access.document_for_uploader)
_current_page = database_sync_to_async(selectors.document_current_page)
_page_set = database_sync_to_async(services.document_page_set)
# Parsing and storing 10 MB take a second or two. Channels runs every
# database_sync_to_async call of the process's consumers on one shared thread;
# an upload there would stall every other socket's database access, so it
# gets a pool thread of its own (it is one self-contained transaction).


def _replace_within_quota(
    *, document: Document, data: bytes, uploaded_by
) -> services.DocumentUpload:
    """document_replace, holding one of the tenant's concurrent_uploads and within max_stored_bytes."""
    with quotas.upload_slot(document.tenant):
        quotas.check_stored_bytes(document.tenant, adding=len(data), replacing_id=document.pk)
        return services.document_replace(document=document, data=data, uploaded_by=uploaded_by)


_replace = database_sync_to_async(_replace_within_quota, thread_sensitive=False)


class DocumentConsumer(LiveConsumer):
    """``/ws/documents/<uuid>/``: the shared page now and after every change (docs/PROTOCOL.md).

    The consumer joins the document's hub group *before* reading the current
    page, so a change committed in between is either in that read or buffered.
    Every page frame carries the document's ``state_seq``; the consumer sends
    only frames newer than the last it sent, so however broadcasts of
    concurrent changes interleave, each viewer ends on the database's state.
    """

    metrics_kind = "document_viewer"
    document: Document
    watch: AccessWatch | None = None
    _joined = False
    _presence_id: str | None = None

    def max_frame_bytes(self) -> int:
        # Binary frames are whole uploads; text frames are held to MAX_TEXT_FRAME below.
        return settings.DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE

    async def connect(self) -> None:
        user = self.scope.get("user")
        document_uuid = self.scope["url_route"]["kwargs"]["document_uuid"]
        document = await _viewer_document(user, document_uuid, **self._credentials())
        if document is None:
            await self.close()
            return
        self.document = document
        self.group = events.document_group(document.uuid)
        self._state = -1
        self._pending: list[Item] | None = []

        session_key = session_key_of(self.scope)

        async def still_allowed() -> bool:
            now = await user_now(session_key, user)
            return await _viewer_document(now, document_uuid, **self._credentials()) is not None

        self.watch = AccessWatch(
            document.tenant.uuid,
            Credential(
                str(document.uuid), user_id=user.pk if user and user.is_authenticated else None
            ),
            still_allowed=still_allowed,
            revoke=self.revoked,
        )
        if not await self.watch.admit(self):
            return
        await self.accept()
        try:
            await Hub.current().join(self.group, self)
        except (redis.RedisError, OSError, TimeoutError):
            await self.close_unavailable()
            return
        self._joined = True
        await self._send_current_page()
        key = self.query_param("key")
        self._presence_id, watching = await Presence.current().enter(
            self.group, viewer_details(user, key)
        )
        await self.send_text(presence_frame(watching))

    async def disconnect(self, code: int) -> None:
        if self.watch is not None:
            await self.watch.stop()
        if self._joined:
            await Hub.current().leave(self.group, self)
        if self._presence_id is not None:
            await Presence.current().leave(self.group, self._presence_id)

    def _credentials(self) -> dict[str, Any]:
        return {"key": self.query_param("key"), "foreign_origin": self.scope.get("foreign_origin")}

    # -- server to client: the shared page, newest state only --------------------

    async def _send_current_page(self) -> None:
        """Read the shared page from the database, send it, then what the hub buffered."""
        self._pending = self._pending or []
        frame = await _current_page(self.document.pk)
        await self._offer(frame["state"], encode(frame))
        pending, self._pending = self._pending, None
        await self.hub_deliver(pending)

    async def hub_deliver(self, items: list[Item]) -> None:
        if self._pending is not None:
            self._pending.extend(items)
            return
        for item in items:
            if item.seq is None:
                await self.send_text(item.text)
            else:
                await self._offer(item.seq, item.text, item.wire)

    async def hub_reconnected(self) -> None:
        # Changes may have been broadcast while the hub was away from Redis.
        if self._pending is None:
            await self._send_current_page()

    async def _offer(self, state: int, text: str, wire: bytes | None = None) -> None:
        if state > self._state:
            self._state = state
            write = self.write_frame
            if wire is not None and write is not None:
                write(wire)  # framed once per process for every viewer (streamsite/server.py)
            else:
                await super().send_text(text)

    async def send_text(self, text: str) -> None:
        """Every frame but the page (which ``_offer`` sends): none at all with ``?format=plain``,
        for clients that read every message as a page (the write-ups' AngularJS table)."""
        if self.query_param("format") != "plain":
            await super().send_text(text)

    # -- client to server: page requests (text) and uploads (binary) ------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if bytes_data is not None:
            await self._upload(bytes_data)
        elif text_data is not None:
            await self._request(text_data)

    async def _request(self, text: str) -> None:
        if len(text) > MAX_TEXT_FRAME:
            await self.send_text(
                error_frame(
                    ErrorCode.TOO_LARGE, f"a text frame is at most {MAX_TEXT_FRAME} characters"
                )
            )
            return
        try:
            frame = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested too deep
            await self.send_text(error_frame(ErrorCode.BAD_JSON, "the frame is not valid JSON"))
            return
        if isinstance(frame, int) and not isinstance(frame, bool):
            page_no: Any = frame  # a bare page number, as the write-ups send
        elif isinstance(frame, dict) and frame.get("type") == "page":
            page_no = frame.get("page_no")
        else:
            await self.send_text(
                error_frame(ErrorCode.BAD_FRAME, 'send {"type": "page", "page_no": n}')
            )
            return
        if isinstance(page_no, bool) or not isinstance(page_no, int):
            await self.send_text(error_frame(ErrorCode.BAD_FRAME, "page_no must be a whole number"))
            return
        document = await _steerer_document(
            self.scope.get("user"), self.document.uuid, **self._credentials()
        )
        if document is None:
            await self.send_text(error_frame(ErrorCode.FORBIDDEN, "you may follow, not turn pages"))
            return
        try:
            page = await _page_set(document=document, page_no=page_no)
        except selectors.PageOutOfRange as exc:
            await self.send_text(error_frame(ErrorCode.OUT_OF_RANGE, str(exc)))
            return
        await self._offer(page["state"], encode(page))

    async def _upload(self, data: bytes) -> None:
        user = self.scope.get("user")
        document = await _uploader_document(user, self.document.uuid, **self._credentials())
        if document is None:
            await self.send_text(error_frame(ErrorCode.FORBIDDEN, "you may follow, not upload"))
            return
        limit = settings.DOCUMENT_MAX_BYTES
        if len(data) > limit:
            await self.send_text(
                error_frame(
                    ErrorCode.TOO_LARGE, f"the file is {len(data):,} bytes; at most {limit:,}"
                )
            )
            return
        try:
            upload = await _replace(
                document=document,
                data=data,
                uploaded_by=user if user is not None and user.is_authenticated else None,
            )
        except TSVError as exc:
            await self.send_text(encode(events.invalid_tsv_frame(exc)))
            return
        except quotas.QuotaExceeded as exc:
            await self.send_text(encode(exc.frame()))
            return
        except ParserUnavailable as exc:
            await self.send_text(error_frame(ErrorCode.UNAVAILABLE, str(exc)))
            return
        await self._offer(upload.frame["state"], encode(upload.frame))
        await self.send_text(encode(events.uploaded_frame(upload.document, upload.warnings)))
