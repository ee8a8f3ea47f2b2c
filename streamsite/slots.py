"""Counted slots across every process: open connections, running uploads and exports.

A cap ("at most N of these at once") is a Redis sorted set
``slots:{slots}:<limit>:<id>`` whose members are the holders, each scored by when it was last confirmed alive.
Taking slots is one Lua script, so it is atomic across processes and takes
either every slot asked for (a connection counts against its user, its share
key and its address at once) or none. A holder is a ``Lease``; a daemon thread
per process re-confirms every live lease every REFRESH_SECONDS, and the script
drops members not confirmed for EXPIRY_SECONDS, so the slots of a process that
died (kill -9) free themselves within EXPIRY_SECONDS. The thread holds leases
weakly: a lease that was dropped without being released (a request whose
response never started) stops being confirmed and expires the same way.

Every slots key has the hash tag ``{slots}``: on a Redis Cluster the one script
that takes a connection's user, share key and address caps at once needs its keys
in one slot. So all caps live on one node; they cost one call per connection
opened and one pipeline per process every REFRESH_SECONDS, not per sample
(docs/ARCHITECTURE.md, "Redis Cluster").

Redis unavailable: slots fail open (nothing is held back, a warning is logged).
Caps protect the service from a tenant; refusing everyone while Redis is away
would be worse than not counting for a moment.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
import weakref
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aredis
from django.conf import settings

from streamsite import frames, hub, metrics
from streamsite.batch import CommandBatch

log = logging.getLogger(__name__)

REFRESH_SECONDS = 15.0
EXPIRY_SECONDS = 45.0

# The clock slots are scored by (wall time, shared by every process); tests replace it.
_clock = time.time

# KEYS: one sorted set per cap. ARGV: now, cutoff, member, then one cap per key.
# Returns 0 when every slot was taken, else the 1-based index of the first full key.
_CLAIM = """
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[2])
  if redis.call('ZCARD', key) >= tonumber(ARGV[3 + i]) then
    return i
  end
end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, ARGV[1], ARGV[3])
  redis.call('EXPIRE', key, ARGV[4 + #KEYS])
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Claim:
    """One slot to take: at most ``cap`` holders of ``limit`` for ``owner`` (a user id, a tenant...)."""

    limit: str
    owner: str
    cap: int
    label: str = ""  # who, for the log (never a secret); else the owner

    @property
    def key(self) -> str:
        return f"slots:{{slots}}:{self.limit}:{self.owner}"


class Refused(Exception):
    """A cap is reached: nothing was taken. ``claim`` names which."""

    def __init__(self, claim: Claim) -> None:
        super().__init__(f"{claim.limit} reached ({claim.cap})")
        self.claim = claim


class Lease:
    """Slots held by one connection or operation; release it exactly once (``finally``)."""

    __slots__ = ("keys", "member", "_released", "__weakref__")

    def __init__(self, keys: tuple[str, ...], member: str) -> None:
        self.keys = keys
        self.member = member
        self._released = not keys

    async def release(self) -> None:
        if self._released:
            return
        self._released = True
        _registry.discard(self)
        keys, member = self.keys, self.member

        def commands(pipe) -> None:
            for key in keys:
                pipe.zrem(key, member)

        try:
            await _batch().send(commands, len(keys))
        except (redis.RedisError, OSError) as exc:
            log.info("slots: release failed (%s); they expire by themselves", exc)

    def release_sync(self) -> None:
        if self._released:
            return
        self._released = True
        _registry.discard(self)
        try:
            with hub.sync_client().pipeline(transaction=False) as pipe:
                for key in self.keys:
                    pipe.zrem(key, self.member)
                pipe.execute()
        except (redis.RedisError, OSError) as exc:
            log.info("slots: release failed (%s); they expire by themselves", exc)


def _script_args(claims: list[Claim], member: str) -> tuple[list[str], list[Any]]:
    now = _clock()
    keys = [claim.key for claim in claims]
    args: list[Any] = [now, now - EXPIRY_SECONDS, member, *(claim.cap for claim in claims)]
    args.append(int(EXPIRY_SECONDS) + 1)
    return keys, args


def _lease_or_refuse(claims: list[Claim], member: str, full: int) -> Lease:
    if full:
        refused = claims[int(full) - 1]
        note_refusal(refused.limit, refused.label or refused.owner, refused.cap)
        raise Refused(refused)
    lease = Lease(tuple(claim.key for claim in claims), member)
    _registry.add(lease)
    return lease


async def claim(claims: list[Claim]) -> Lease:
    """Take one slot of every claim, or none (raises Refused naming the first full one)."""
    if not claims:
        return Lease((), "")
    member = uuid.uuid4().hex
    keys, args = _script_args(claims, member)
    try:
        (full,) = await _batch().send(lambda pipe: pipe.eval(_CLAIM, len(keys), *keys, *args), 1)
    except (redis.RedisError, OSError) as exc:
        log.warning("slots: caps unavailable (%s); not counted", exc)
        return Lease((), member)
    return _lease_or_refuse(claims, member, full)


def claim_sync(claims: list[Claim]) -> Lease:
    """claim() for synchronous code (views, management commands)."""
    if not claims:
        return Lease((), "")
    member = uuid.uuid4().hex
    keys, args = _script_args(claims, member)
    try:
        full = hub.sync_client().eval(_CLAIM, len(keys), *keys, *args)
    except (redis.RedisError, OSError) as exc:
        log.warning("slots: caps unavailable (%s); not counted", exc)
        return Lease((), member)
    return _lease_or_refuse(claims, member, full)


_last_logged: dict[tuple[str, str], float] = {}
LOG_EVERY_SECONDS = 60.0


def note_refusal(limit: str, who: str, cap: int) -> None:
    """Count a refusal (``streamsite_limit_refusals_total{kind=<limit>}``) and log it,
    at most once a minute per limit and holder: a flood must not flood the log."""
    metrics.inc("limit_refusals_total", kind=limit)
    now = time.monotonic()
    if now - _last_logged.get((limit, who), -LOG_EVERY_SECONDS) >= LOG_EVERY_SECONDS:
        if len(_last_logged) > 10_000:
            _last_logged.clear()
        _last_logged[(limit, who)] = now
        log.info("limit: %s reached (%s) by %s; refusing", limit, cap, who)


def held(limit: str, owner: str) -> int:
    """How many slots of ``limit`` for ``owner`` are held now, in every process (sync)."""
    key = Claim(limit, owner, 0).key
    return int(hub.sync_client().zcount(key, _clock() - EXPIRY_SECONDS, "+inf"))


def share_key_owner(key: str) -> str:
    """The share key's slot owner: a digest, so that Redis never holds a key itself."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def connection_claims(*, user: Any, key: str | None, address: str | None) -> list[Claim]:
    """The caps one open connection (WebSocket or Server-Sent Events) counts against."""
    claims = []
    if user is not None and user.is_authenticated:
        claims.append(
            Claim(
                "connections_per_user",
                str(user.pk),
                settings.MAX_CONNECTIONS_PER_USER,
                f"user {user.pk}",
            )
        )
    if key:
        claims.append(
            Claim(
                "connections_per_share_key",
                share_key_owner(key),
                settings.MAX_CONNECTIONS_PER_SHARE_KEY,
                f"share key #{share_key_owner(key)[:8]}",
            )
        )
    if address:
        claims.append(
            Claim("connections_per_address", address, settings.MAX_CONNECTIONS_PER_ADDRESS)
        )
    return claims


CONNECTION_CAP_SETTINGS = {
    "connections_per_user": ("MAX_CONNECTIONS_PER_USER", "per user"),
    "connections_per_share_key": ("MAX_CONNECTIONS_PER_SHARE_KEY", "per share key"),
    "connections_per_address": ("MAX_CONNECTIONS_PER_ADDRESS", "per client address"),
}


def too_many_connections(refused: Refused) -> frames.ErrorFrame:
    """The error frame (and SSE 429 body) for a connection over one of its caps."""
    claim = refused.claim
    what = CONNECTION_CAP_SETTINGS.get(claim.limit, ("", claim.limit))[1]
    return frames.error(
        frames.ErrorCode.TOO_MANY_CONNECTIONS,
        f"at most {claim.cap} open connections {what}; close one and retry",
        limit=claim.limit,
    )


# -- keeping leases alive ------------------------------------------------------


class _Registry:
    """This process's live leases, re-confirmed by one daemon thread."""

    def __init__(self) -> None:
        self._leases: weakref.WeakSet[Lease] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, lease: Lease) -> None:
        with self._lock:
            self._leases.add(lease)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="slots", daemon=True)
                self._thread.start()

    def discard(self, lease: Lease) -> None:
        with self._lock:
            self._leases.discard(lease)

    def _run(self) -> None:
        while True:
            time.sleep(REFRESH_SECONDS)
            try:
                self.refresh()
            except (redis.RedisError, OSError) as exc:
                log.warning("slots: refresh failed (%s)", exc)

    def refresh(self) -> None:
        with self._lock:
            leases = list(self._leases)
        by_key: dict[str, dict[str, float]] = {}
        now = _clock()
        for lease in leases:
            for key in lease.keys:
                by_key.setdefault(key, {})[lease.member] = now
        if not by_key:
            return
        with hub.sync_client().pipeline(transaction=False) as pipe:
            for key, members in by_key.items():
                # XX: only members still there; a released one is not brought back.
                pipe.zadd(key, members, xx=True)
                pipe.expire(key, int(EXPIRY_SECONDS) + 1)
            pipe.execute()


_registry = _Registry()


def _async_client() -> aredis.Redis:
    """This event loop's client, on the runtime's one connection pool."""
    from streamsite.runtime import Runtime

    return Runtime.for_loop().redis


def _batch() -> CommandBatch:
    """This event loop's shared pipeline (claims and releases of many connections at once)."""
    from streamsite.runtime import Runtime

    return Runtime.for_loop().batch
