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

Handshakes reuse decisions (``Decisions``). When every viewer reconnects at
once (a deploy, a Redis blip), thousands of handshakes ask the same question:
may anybody with this share key (or this user) watch this feed? Each event
loop keeps the admitted answers it reached, per tenant, in a subscriber of the
tenant's control group; any notice in that group, or a renewed subscription,
forgets every answer of that tenant. An answer is only kept if its subscriber
was joined before the check began and no notice arrived until it ended, and a
handshake that reuses one has joined the group itself first: a revocation
that commits after the answer was reached reaches that connection like any
other, and closes it. Refusals are never kept.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import time
import uuid as uuid_module
import weakref
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
    if user is None or not user.is_authenticated:
        return user  # nothing to re-read: no trip to the database thread
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


# How long an admitted answer is reused at most. Notices make it exact; this
# only bounds how long a lost notice (pub/sub is fire-and-forget) could matter
# to new handshakes. Open connections are re-checked by notices, not by this.
DECISION_SECONDS = 30.0
# Answers kept per event loop, at most (a stranger's many keys cannot grow it).
MAX_DECISIONS = 10_000


class _TenantDecisions:
    """A subscriber of one tenant's control group: each notice starts a new generation."""

    __slots__ = ("group", "generation", "joined", "__weakref__")

    def __init__(self, group: str) -> None:
        self.group = group
        # An answer is good only in the generation it was reached in.
        self.generation = 0
        self.joined: asyncio.Future[None] | None = None

    async def hub_deliver(self, items: list[Item]) -> None:
        self.generation += 1

    async def hub_reconnected(self) -> None:
        self.generation += 1  # notices may have been missed


class Decisions:
    """Admitted access answers of one event loop, forgotten by any notice of their tenant."""

    _instances: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Decisions] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self) -> None:
        self._tenants: dict[str, _TenantDecisions] = {}
        # key -> (good until, the tenant's subscriber, its generation then, the answer)
        self._answers: dict[Any, tuple[float, _TenantDecisions, int, Any]] = {}
        self._next_sweep = time.monotonic() + DECISION_SECONDS
        self._leaving: set[asyncio.Future[None]] = set()

    @classmethod
    def current(cls) -> Decisions:
        loop = asyncio.get_running_loop()
        decisions = cls._instances.get(loop)
        if decisions is None:
            decisions = cls._instances[loop] = cls()
        return decisions

    def lookup(self, key: Any) -> Any | None:
        """The answer kept for ``key`` (what the first check returned), or None."""
        self._sweep()
        found = self._answers.get(key)
        if found is None:
            return None
        until, tenant, generation, answer = found
        if until > time.monotonic() and self._current(tenant, generation):
            return answer
        del self._answers[key]
        return None

    async def tenant(self, group: str) -> _TenantDecisions:
        """The subscriber of a control group, joined (confirmed by Redis) when this returns."""
        tenant = self._tenants.get(group)
        if tenant is None:
            tenant = self._tenants[group] = _TenantDecisions(group)
        if tenant.joined is None:
            tenant.joined = asyncio.ensure_future(Hub.current().join(group, tenant))
        joined = tenant.joined
        try:
            if joined.done():
                joined.result()  # the common case: joined long ago
            else:
                await asyncio.shield(joined)
        except BaseException:
            if joined.done() and tenant.joined is joined:
                tenant.joined = None  # the next handshake tries again
            raise
        return tenant

    def keep(self, tenant: _TenantDecisions, generation: int, key: Any, answer: Any) -> None:
        """Keep an answer reached in ``generation`` if no notice has arrived since."""
        if self._current(tenant, generation) and len(self._answers) < MAX_DECISIONS:
            self._answers[key] = (time.monotonic() + DECISION_SECONDS, tenant, generation, answer)

    def _current(self, tenant: _TenantDecisions, generation: int) -> bool:
        # Still joined (not swept) and no notice since: what was decided still holds.
        return tenant.generation == generation and self._tenants.get(tenant.group) is tenant

    def _sweep(self) -> None:
        """Now and then: drop stale answers, and leave the groups of tenants with none left."""
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + DECISION_SECONDS
        for key, (until, tenant, generation, _) in list(self._answers.items()):
            if until <= now or tenant.generation != generation:
                del self._answers[key]
        used = {id(tenant) for _, tenant, _, _ in self._answers.values()}
        for group, tenant in list(self._tenants.items()):
            if id(tenant) not in used and tenant.joined is not None and tenant.joined.done():
                del self._tenants[group]
                leaving = asyncio.ensure_future(Hub.current().leave(group, tenant))
                self._leaving.add(leaving)
                leaving.add_done_callback(self._leaving.discard)


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

    async def enter(self, remember: tuple[Any, Any] | None = None) -> Admission:
        """Join the control group, then confirm access once more: the one admission step.

        WebSockets (``admit``) and event streams (streams/views.py) both take it
        before they send anything. Joining first closes the window in which a
        revocation made between the first access check and the join would be
        missed. Only when ADMITTED is the watch left joined.

        With ``remember=(key, answer)`` (``answer``: what the first check found)
        the answer is kept for the next handshake that asks the same (see
        ``Decisions``); if it was itself a kept answer, still kept now that
        this watch is joined, nothing more is checked.
        """
        decisions = Decisions.current() if remember is not None else None
        try:
            tenant = await decisions.tenant(self.group) if decisions is not None else None
            await self.start()
        except (redis.RedisError, OSError, TimeoutError):
            return Admission.UNAVAILABLE
        if decisions is not None and tenant is not None and remember is not None:
            key, answer = remember
            if decisions.lookup(key) is answer:
                # Kept before this watch joined and not forgotten since: any
                # change from here on reaches this watch, which re-checks.
                return Admission.ADMITTED
            generation = tenant.generation
        if not await self._still_allowed():
            await self.stop()
            return Admission.REFUSED
        if decisions is not None and tenant is not None and remember is not None:
            decisions.keep(tenant, generation, *remember)
        return Admission.ADMITTED

    async def admit(self, consumer: Any, remember: tuple[Any, Any] | None = None) -> bool:
        """``enter`` for a WebSocket, before the handshake completes.

        On False the handshake has been refused (access gone) or closed (1011:
        Redis away).
        """
        admission = await self.enter(remember)
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
