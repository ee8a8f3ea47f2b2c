"""Who is watching a feed or document now, across every process.

Each open connection is a member of a Redis sorted set ``presence:{<group>}``
scored by the time it was last confirmed alive, with its details (user or
share key, since when) in the hash ``presence-info:{<group>}``. The braces
are a hash tag: on a Redis Cluster a group's two keys share a slot, so a
connection's enter or leave is one round trip to one node. Each process
re-confirms all of its own connections in one pipeline every REFRESH seconds,
so connections of a process that died without saying goodbye drop out after
EXPIRY seconds.

Counts are broadcast as ``presence`` frames, at most once a second per group
per process: a thousand viewers arriving at once cause a few broadcasts, not
a thousand (which would be a million frames). A group of more than 1,000
viewers is broadcast at most every count / 1,000 seconds
(``PRESENCE_FRAMES_PER_SECOND``), so presence costs a process at most about
1,000 frames a second per group however big its audience.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any, cast

import redis
import redis.asyncio as aredis

from streamsite import frames, hub
from streamsite.batch import CommandBatch
from streamsite.frames import encode

log = logging.getLogger(__name__)

REFRESH_SECONDS = 15.0
EXPIRY_SECONDS = 45.0
BROADCAST_EVERY_SECONDS = 1.0
# A big audience hears its count less often: one broadcast of a group's count is
# one frame to each of its viewers, so a process broadcasts a group at most every
# max(1 s, count / 1,000 s): 10,000 viewers hear it every 10 s. While 10,000 viewers
# connected, once-a-second counts were a fifth of the server's CPU.
PRESENCE_FRAMES_PER_SECOND = 1000


def _members_key(group: str) -> str:
    return f"presence:{{{group}}}"


def _info_key(group: str) -> str:
    return f"presence-info:{{{group}}}"


def presence_frame(count: int) -> str:
    return encode(frames.presence(count))


class Presence:
    """This event loop's view of its own connections (owned by streamsite.runtime.Runtime)."""

    def __init__(self, client: aredis.Redis, batch: CommandBatch | None = None) -> None:
        self._redis = client
        # Entries and departures share the loop's pipeline (streamsite.batch).
        self._batch = batch or CommandBatch(client)
        self._local: dict[str, set[str]] = {}
        self._dirty: set[str] = set()
        # When each group may be broadcast next (time.monotonic()).
        self._next_broadcast: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def current(cls) -> Presence:
        """This event loop's presence."""
        from streamsite.runtime import Runtime

        return Runtime.for_loop().presence

    async def enter(self, group: str, details: dict[str, Any]) -> tuple[str, int]:
        """Register a connection; returns its id and the group's count including it."""
        member = uuid.uuid4().hex
        now = time.time()
        details = {**details, "since": now}
        info = json.dumps(details)

        def commands(pipe) -> None:
            pipe.zadd(_members_key(group), {member: now})
            pipe.hset(_info_key(group), member, info)
            pipe.zcount(_members_key(group), now - EXPIRY_SECONDS, "+inf")

        try:
            *_, count = await self._batch.send(commands, 3)
        except (redis.RedisError, OSError) as exc:
            log.warning("presence: enter %s failed (%s)", group, exc)
            count = 0
        self._local.setdefault(group, set()).add(member)
        self._mark_dirty(group)
        return member, int(count)

    async def leave(self, group: str, member: str) -> None:
        members = self._local.get(group)
        if members is not None:
            members.discard(member)
            if not members:
                del self._local[group]

        def commands(pipe) -> None:
            pipe.zrem(_members_key(group), member)
            pipe.hdel(_info_key(group), member)

        try:
            await self._batch.send(commands, 2)
        except (redis.RedisError, OSError) as exc:
            log.info("presence: leave %s failed (%s); it expires by itself", group, exc)
        self._mark_dirty(group)

    def _mark_dirty(self, group: str) -> None:
        self._dirty.add(group)
        self._ensure_running()

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="presence")

    async def _run(self) -> None:
        next_refresh = time.monotonic() + REFRESH_SECONDS
        while self._local or self._dirty:
            await asyncio.sleep(BROADCAST_EVERY_SECONDS)
            try:
                if time.monotonic() >= next_refresh:
                    await self._refresh()
                    next_refresh = time.monotonic() + REFRESH_SECONDS
                    self._forget_broadcasts()
                dirty, self._dirty = self._dirty, set()
                now = time.monotonic()
                for group in dirty:
                    if self._next_broadcast.get(group, 0.0) > now:
                        self._dirty.add(group)  # its turn comes
                        continue
                    count = await count_watching(self._redis, group)
                    hub.publish(group, [(None, presence_frame(count))])
                    self._next_broadcast[group] = now + max(
                        BROADCAST_EVERY_SECONDS, count / PRESENCE_FRAMES_PER_SECOND
                    )
            except (redis.RedisError, OSError) as exc:
                log.warning("presence: update failed (%s)", exc)

    def _forget_broadcasts(self) -> None:
        """Drop the broadcast times of groups this process no longer holds or owes."""
        now = time.monotonic()
        for group, due in list(self._next_broadcast.items()):
            if due <= now and group not in self._local and group not in self._dirty:
                del self._next_broadcast[group]

    async def _refresh(self) -> None:
        now = time.time()
        async with self._redis.pipeline(transaction=False) as pipe:
            for group, members in self._local.items():
                pipe.zadd(_members_key(group), dict.fromkeys(members, now))
                pipe.zremrangebyscore(_members_key(group), "-inf", now - EXPIRY_SECONDS)
            await pipe.execute()


async def count_watching(client: aredis.Redis, group: str) -> int:
    return int(await client.zcount(_members_key(group), time.time() - EXPIRY_SECONDS, "+inf"))


def watching_count(group: str) -> int:
    """How many watch the group now (sync, for the admin's lists)."""
    client = hub.sync_client()
    return int(client.zcount(_members_key(group), time.time() - EXPIRY_SECONDS, "+inf"))


def watching(group: str) -> list[dict[str, Any]]:
    """Everyone watching the group now, oldest first (sync, for the admin)."""
    client = hub.sync_client()
    cutoff = time.time() - EXPIRY_SECONDS
    members = cast(list[bytes], client.zrangebyscore(_members_key(group), cutoff, "+inf"))
    if not members:
        return []
    details = client.hmget(_info_key(group), members)
    found = [json.loads(d) for d in details if d]
    return sorted(found, key=lambda d: d.get("since", 0))
