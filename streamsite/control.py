"""Access changes reach open connections within a moment.

Revoking a share key, a producer token or a membership must close the
connections that relied on it, in every process. Each consumer joins its
tenant's control group (``control.tenant.<uuid>``) through the hub and keeps
the credential it was let in with. Services announce a change after commit
with ``access_changed``: the notice names what changed (an object, a user, a
producer) but never carries a secret. Only consumers whose credential the
notice touches re-run their access check, and close (4403) if now refused.

A connection let in by a session re-checks with the session's user as it is
now (``user_now``): signed out, password changed (the session auth hash no
longer matches) or deactivated, that is nobody. Changes to a user (tenants/
signals.py) are announced to every tenant the user belongs to.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import uuid as uuid_module
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis
from channels.db import database_sync_to_async
from django.db import transaction

from streamsite import hub
from streamsite.frames import encode
from streamsite.hub import Hub, Item
from tenants.access import session_user

log = logging.getLogger(__name__)


def control_group(tenant_uuid: uuid_module.UUID | str) -> str:
    return f"control.tenant.{tenant_uuid}"


def access_changed(
    *,
    tenant_uuid: uuid_module.UUID | str,
    object_uuid: uuid_module.UUID | str | None = None,
    user_id: int | None = None,
    producer_uuid: uuid_module.UUID | str | None = None,
) -> None:
    """After commit, tell every process that access around these changed."""
    notice = {
        "type": "access_changed",
        "object": str(object_uuid) if object_uuid else None,
        "user": user_id,
        "producer": str(producer_uuid) if producer_uuid else None,
    }
    group = control_group(tenant_uuid)
    frame = encode(notice)
    transaction.on_commit(lambda: hub.publish(group, [(None, frame)]))


_session_user = database_sync_to_async(session_user)


def session_key_of(scope: dict[str, Any]) -> str | None:
    """The session key a WebSocket came in with (None without a session)."""
    session = scope.get("session")
    return getattr(session, "session_key", None) if session is not None else None


async def user_now(session_key: str | None, user: Any) -> Any:
    """``user`` if the session that let them in still holds, else AnonymousUser."""
    return await _session_user(session_key, user)


@dataclass(frozen=True, slots=True)
class Credential:
    """What let a connection in: a session user, a share key of an object, or a producer token."""

    object_uuid: str
    user_id: int | None = None
    producer_uuid: str | None = None

    def touched_by(self, notice: dict[str, Any]) -> bool:
        if self.producer_uuid is not None:
            return notice.get("producer") == self.producer_uuid
        if notice.get("object") == self.object_uuid:
            return True
        return self.user_id is not None and notice.get("user") == self.user_id


class Admission(enum.Enum):
    """How ``AccessWatch.enter`` went."""

    ADMITTED = "admitted"
    REFUSED = "refused"  # access went between the first check and the join
    UNAVAILABLE = "unavailable"  # Redis away: revocations could not reach this connection


class AccessWatch:
    """Re-checks one connection's access when a notice touches its credential."""

    __slots__ = ("group", "credential", "_still_allowed", "_revoke", "_joined", "_check")

    def __init__(
        self,
        tenant_uuid: uuid_module.UUID | str,
        credential: Credential,
        *,
        still_allowed: Callable[[], Awaitable[bool]],
        revoke: Callable[[], Awaitable[None]],
    ) -> None:
        self.group = control_group(tenant_uuid)
        self.credential = credential
        self._still_allowed = still_allowed
        self._revoke = revoke
        self._joined = False
        self._check: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await Hub.current().join(self.group, self)
        self._joined = True

    async def enter(self) -> Admission:
        """Join the control group, then confirm access once more: the one admission step.

        WebSockets (``admit``) and event streams (streams/views.py) both take it
        before they send anything. Joining first closes the window in which a
        revocation made between the first access check and the join would be
        missed. Only when ADMITTED is the watch left joined.
        """
        try:
            await self.start()
        except (redis.RedisError, OSError, TimeoutError):
            return Admission.UNAVAILABLE
        if not await self._still_allowed():
            await self.stop()
            return Admission.REFUSED
        return Admission.ADMITTED

    async def admit(self, consumer: Any) -> bool:
        """``enter`` for a WebSocket, before the handshake completes.

        On False the handshake has been refused (access gone) or closed (1011:
        Redis away).
        """
        admission = await self.enter()
        if admission is Admission.UNAVAILABLE:
            await consumer.close_unavailable()
        elif admission is Admission.REFUSED:
            await consumer.close()
        return admission is Admission.ADMITTED

    async def stop(self) -> None:
        if self._joined:
            self._joined = False
            await Hub.current().leave(self.group, self)

    async def hub_deliver(self, items: list[Item]) -> None:
        for item in items:
            try:
                notice = json.loads(item.text)
            except ValueError:
                continue
            if self.credential.touched_by(notice):
                self._schedule_check()

    async def hub_reconnected(self) -> None:
        # Notices may have been lost while Redis was away.
        self._schedule_check()

    def _schedule_check(self) -> None:
        if self._check is None or self._check.done():
            self._check = asyncio.create_task(self._recheck())

    async def _recheck(self) -> None:
        try:
            allowed = await self._still_allowed()
        except Exception:
            log.exception("access re-check failed; keeping the connection")
            return
        if not allowed:
            await self._revoke()
