"""Process-local fan-out of live events, carried between processes by Redis pub/sub.

Why not ``group_send`` per viewer: with the channel layer, every viewer of a
sample costs a Redis round trip, a dispatch through the consumer (with a thread
hop in Channels 4.3) and a JSON encode. That is ~10x the CPU of a plain
broadcaster. Here the frame is encoded once by the publisher, each process
subscribes to a group's Redis channel once, however many viewers it holds, and
delivering to a viewer is one method call that writes the pre-encoded text.

A group is a Redis pub/sub channel ``streamsite__group__<group>``; groups are
keyed by UUID (``feed.<uuid>``, ``document.<uuid>``). A message carries one or
more items; an item is a frame plus an optional sequence number, so that a
viewer can skip duplicates and notice gaps without parsing the frame.

The channel layer. ``CHANNEL_LAYERS`` is channels-redis's pub/sub layer
(``RedisPubSubChannelLayer``, prefix ``streamsite``, JSON serializer) on the
same Redis, and its group channels are these: ``{prefix}__group__{group}``.
So ``channel_layer.group_send("feed.<uuid>", {"type": "stream.frame",
"frame": {...}, "seq": n})``, from any process or a shell, reaches every
viewer of the group through the hub, as if a service had published it; the
hub tells the two formats apart by the first byte (a layer message is a JSON
object, ``{``; the hub's own items start with a digit or a tab). The hub's
own publishes keep their compact format: the prepared-frame broadcast is the
fast path, and the layer is its public door.

On a Redis Cluster (``REDIS_CLUSTER=1``) a group's channel is a shard channel:
SPUBLISH here, SSUBSCRIBE through ``streamsite.cluster.ShardedSubscription``,
which speaks the same dialect as redis-py's PubSub; the rest is this code.

Pub/sub is fire-and-forget: a process that loses Redis misses what was sent in
the meantime. Subscribers are told (``hub_reconnected``) and recover from the
database, which is the source of truth; the hub only makes things fast.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

import redis
from django.conf import settings

from streamsite import cluster, pubsub
from streamsite.frames import encode, websocket_frame

log = logging.getLogger(__name__)

# channels-redis's name for a group's channel, with CHANNEL_LAYERS' prefix "streamsite"
# (tests/streamsite/test_layer.py checks it against the layer itself).
CHANNEL_PREFIX = "streamsite__group__"
# What a group_send through the layer may carry to viewers (see the module docstring).
LAYER_FRAME = "stream.frame"
JOIN_TIMEOUT_SECONDS = 5.0
# The reader pings Redis when it has heard nothing for this long ...
PING_EVERY_SECONDS = 5.0
# ... so a subscription silent for this long is not working (/healthz says so).
STALE_AFTER_SECONDS = 3 * PING_EVERY_SECONDS


class Item(NamedTuple):
    """One frame of a broadcast: its sequence number (if any), its text and its wire form."""

    seq: int | None
    text: str
    wire: bytes


def make_item(seq: int | None, text: str) -> Item:
    return Item(seq, text, websocket_frame(text))


def encode_items(items: Sequence[tuple[int | None, str]]) -> str:
    # JSON text never contains a raw newline or tab, so both are safe separators.
    return "\n".join(f"{'' if seq is None else seq}\t{frame}" for seq, frame, *_ in items)


def layer_items(data: bytes) -> list[Item]:
    """The items of a message sent through the channel layer (``group_send``).

    ``{"type": "stream.frame", "frame": {...}, "seq": n}`` is one frame (``seq``
    optional); anything else is not for viewers and yields nothing.
    """
    try:
        message = json.loads(data)
    except ValueError:
        message = None
    if not isinstance(message, dict) or message.get("type") != LAYER_FRAME:
        log.warning("hub: a channel-layer message that is not a %s was ignored", LAYER_FRAME)
        return []
    frame, seq = message.get("frame"), message.get("seq")
    if not isinstance(frame, dict) or not (seq is None or type(seq) is int):
        log.warning("hub: a %s without a frame object (or with a bad seq) was ignored", LAYER_FRAME)
        return []
    return [make_item(seq, encode(frame))]


def decode_items(payload: str) -> list[Item]:
    """Decoded once per process per message; every local subscriber gets the same items."""
    items: list[Item] = []
    for line in payload.split("\n"):
        seq, _, frame = line.partition("\t")
        items.append(make_item(int(seq) if seq else None, frame))
    return items


# -- publishing (sync: called from services, after commit, in any thread) -----

_sync_client: redis.Redis | None = None
_sync_lock = threading.Lock()


def sync_client() -> redis.Redis:
    global _sync_client
    with _sync_lock:
        if _sync_client is None:
            if settings.REDIS_CLUSTER:
                _sync_client = cluster.sync_client(settings.REDIS_URL)
            else:
                _sync_client = redis.Redis.from_url(
                    settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=2
                )
        return _sync_client


# A counter is (Redis key, amount, seconds the key lives after its last add):
# INCRBY and EXPIRE, summed in the publisher thread and written at most every
# COUNTERS_EVERY_SECONDS (and by flush), not once per publish.
Counter = tuple[str, int, int]
COUNTERS_EVERY_SECONDS = 1.0


def publish(group: str, items: Sequence[tuple[int | None, str]]) -> None:
    """Send items to every process subscribed to the group (see publish_many)."""
    publish_many([(group, items)])


def publish_many(
    messages: Sequence[tuple[str, Sequence[tuple[int | None, str]]]],
    *,
    counters: Sequence[Counter] = (),
) -> None:
    """Queue messages for this process's publisher thread, which sends them in order.

    Callers publish after the database commit and must not wait for Redis: the
    committing thread (the one database thread of a Daphne process, say) goes
    back to work at once, and everything queued meanwhile leaves in one round
    trip. A lost publish only delays viewers, who fill the gap from the database.
    ``counters`` are added to Redis counters (metrics) within a second.
    """
    messages = [(group, items) for group, items in messages if items]
    if messages or counters:
        _publisher().put(messages, counters)


def live_events_problem(*, ping: bool = True) -> str | None:
    """Why this process cannot send live events, in one line; None when it can.

    For commands: in a checkout whose ``make run`` is not running there is no
    Redis at all (settings.REDIS_URL_ORIGIN "none", see streamsite/checkout.py);
    with ``ping``, a configured Redis that does not answer counts too.
    """
    if settings.REDIS_URL_ORIGIN == "none":
        return (
            "live events need the private Redis of `make run`, which is not running in "
            "this checkout: start `make run` in another shell, or set REDIS_URL"
        )
    if ping:
        try:
            sync_client().ping()
        except redis.RedisError as exc:
            where = settings.REDIS_URL.rsplit("@", 1)[-1]  # never a password
            return f"Redis ({where}) does not answer: {exc}"
    return None


def flush(timeout: float = 5.0) -> bool:
    """Wait until everything queued, counters too, has been sent (producer commands call
    this on exit)."""
    publisher = _the_publisher
    return publisher is None or publisher.drain(timeout)


def publisher_backlog() -> int:
    """Messages queued or being sent by this process's publisher thread (for /healthz)."""
    publisher = _the_publisher
    return 0 if publisher is None else publisher.backlog


# What the publisher's queue holds: messages and counters, or _FLUSH_COUNTERS.
_Put = tuple[list[tuple[str, Sequence[tuple[int | None, str]]]], Sequence[Counter]]
_FLUSH_COUNTERS: _Put = ([], ())


class _Publisher(threading.Thread):
    """Sends what publish_many queued, in order, everything queued meanwhile in one write.

    ``drain`` is exact: it counts the puts not yet sent (incremented before an
    item is queued, decremented after its batch was sent), so a put that lands
    while a batch is being sent keeps ``drain`` waiting. (An "idle" event set
    when the queue looked empty could be set just before such a put arrived.)

    To one Redis, a batch is its PUBLISH commands written as RESP in one send,
    their replies read back: redis-py's Pipeline cost ~25 us of Python per
    command (its command stack, response callbacks and observability hooks),
    most of this thread's time when every commit publishes to a few feeds
    (docs/ARCHITECTURE.md, "Many small feeds"). The connection is redis-py's,
    from the client's pool (connect, AUTH, TLS). On a cluster, the pipeline
    splits the batch by node (SPUBLISH to each channel's slot).
    """

    def __init__(self, client: Callable[[], redis.Redis] | None = None) -> None:
        super().__init__(name="hub-publisher", daemon=True)
        self._client = client or sync_client
        self._queue: queue.SimpleQueue[_Put] = queue.SimpleQueue()
        self._outstanding = 0
        self._done = threading.Condition()
        # Counters summed since they were last written: key -> [amount, ttl].
        self._counters: dict[str, list[int]] = {}
        self._counters_due = 0.0
        self._last_client: redis.Redis | None = None
        self._to_cluster = False

    @property
    def backlog(self) -> int:
        return self._outstanding

    def put(self, messages: list, counters: Sequence[Counter] = ()) -> None:
        with self._done:
            self._outstanding += 1
        self._queue.put((messages, counters))

    def drain(self, timeout: float) -> bool:
        """True once every put so far, and the counters, have been sent (or failed to);
        False after ``timeout``."""
        with self._done:
            self._outstanding += 1
        self._queue.put(_FLUSH_COUNTERS)
        with self._done:
            return self._done.wait_for(lambda: self._outstanding == 0, timeout)

    def run(self) -> None:
        failing = False
        while True:
            # Summed counters are written within COUNTERS_EVERY_SECONDS even if nothing
            # else is put: wake for them.
            wait = max(0.0, self._counters_due - time.monotonic()) if self._counters else None
            try:
                batch = [self._queue.get(timeout=wait)]
            except queue.Empty:
                batch = []
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                sent = self._send(batch)
            except redis.RedisError as exc:
                # Once per outage, not once per sample (a busy producer publishes
                # hundreds of times a second): what is lost, viewers fill from the database.
                if not failing:
                    log.warning("hub: publish failed (%s); viewers will fill the gap", exc)
                failing = True
            else:
                if failing and sent:
                    log.warning("hub: publishing again")
                failing = failing and not sent
            finally:
                with self._done:
                    self._outstanding -= len(batch)
                    if self._outstanding == 0:
                        self._done.notify_all()

    def _due_counters(self, batch: list[_Put]) -> list[tuple[str, int, int]]:
        """Adds the batch's counters to the sums; returns the sums if they are due."""
        counters = self._counters
        for _, added in batch:
            for key, amount, ttl in added:
                summed = counters.get(key)
                if summed is None:
                    counters[key] = [amount, ttl]
                else:
                    summed[0] += amount
        now = time.monotonic()
        flushing = any(put is _FLUSH_COUNTERS for put in batch)
        if not counters or (now < self._counters_due and not flushing):
            return []
        self._counters, self._counters_due = {}, now + COUNTERS_EVERY_SECONDS
        return [(key, amount, ttl) for key, (amount, ttl) in counters.items()]

    def _send(self, batch: list[_Put]) -> bool:
        """Sends the batch's messages and the counters if due; False if there was nothing."""
        counters = self._due_counters(batch)
        messages = [message for messages, _ in batch for message in messages]
        if not messages and not counters:
            return False
        client = self._client()
        if client is not self._last_client:  # isinstance against redis-py's ABCs is slow
            self._last_client, self._to_cluster = client, cluster.is_cluster(client)
        if self._to_cluster:
            with client.pipeline(transaction=False) as pipe:
                for group, items in messages:
                    pipe.spublish(CHANNEL_PREFIX + group, encode_items(items))
                for key, amount, ttl in counters:
                    pipe.incrby(key, amount)
                    pipe.expire(key, ttl)
                pipe.execute()
            return True
        commands = [
            pubsub.command(b"PUBLISH", CHANNEL_PREFIX + group, encode_items(items))
            for group, items in messages
        ]
        for key, amount, ttl in counters:
            commands.append(pubsub.command(b"INCRBY", key, str(amount)))
            commands.append(pubsub.command(b"EXPIRE", key, str(ttl)))
        pubsub.send_commands(client, commands)
        return True


_the_publisher: _Publisher | None = None


def _publisher() -> _Publisher:
    global _the_publisher
    with _sync_lock:
        if _the_publisher is None or not _the_publisher.is_alive():
            _the_publisher = _Publisher()
            _the_publisher.start()
            atexit.register(flush)
        return _the_publisher


# -- subscribing (async: one Hub per event loop) -------------------------------


class Subscriber(Protocol):
    async def hub_deliver(self, items: list[Item]) -> None:
        """Called with each message's items, in publish order. Must not block."""

    async def hub_reconnected(self) -> None:
        """Called after the hub lost and regained Redis: messages may have been missed."""


class Hub:
    """The one Redis subscription of this event loop (owned by streamsite.runtime.Runtime)."""

    def __init__(self, redis_at: str | cluster.AsyncRedisCluster) -> None:
        # One connection of its own to a single Redis (``redis_at`` is its URL,
        # streamsite.pubsub); on a cluster (a cluster client), one connection per node
        # that owns a subscribed group's slot.
        self._pubsub: pubsub.Subscription | cluster.ShardedSubscription = (
            cluster.ShardedSubscription(redis_at)
            if isinstance(redis_at, cluster.AsyncRedisCluster)
            else pubsub.Subscription(redis_at)
        )
        self._groups: dict[str, set[Subscriber]] = {}
        self._confirmations: dict[str, asyncio.Future[None]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        # False from the moment the reader loses Redis until a subscription is confirmed again.
        self._connected = True
        # time.monotonic() of the last reply the reader read (a message, a confirmation,
        # the answer to its ping); None before the first.
        self._last_heard: float | None = None

    @classmethod
    def current(cls) -> Hub:
        """This event loop's hub."""
        from streamsite.runtime import Runtime

        return Runtime.for_loop().hub

    def status(self) -> dict[str, object]:
        """What /healthz shows: counts and times only, never a group's name."""
        reading = self._reader is not None and not self._reader.done()
        heard = self._last_heard
        return {
            "groups": len(self._groups),
            "unconfirmed": len(self._confirmations),
            "reader": "running" if reading else "idle",
            "connected": self._connected,
            "last_heard_seconds": None if heard is None else round(time.monotonic() - heard, 3),
        }

    def problem(self) -> str | None:
        """Why this hub cannot deliver now, in a few words; None when it can (or has nothing to)."""
        if not self._groups:
            return None
        if self._reader is None or self._reader.done():
            return "subscribed groups but no reader"
        if not self._connected:
            return "reader lost Redis"
        heard = self._last_heard
        if heard is None or time.monotonic() - heard > STALE_AFTER_SECONDS:
            return f"nothing heard from Redis for over {STALE_AFTER_SECONDS:.0f} s"
        return None

    def local_count(self, group: str) -> int:
        return len(self._groups.get(group, ()))

    async def join(self, group: str, subscriber: Subscriber) -> None:
        """Add a subscriber; returns once Redis confirms the subscription.

        Anything published after this returns reaches the subscriber. Raises
        ``redis.RedisError`` or ``TimeoutError`` if Redis cannot be reached, at
        once while this hub knows it is away: a group that already has local
        subscribers needs no Redis round trip, and would otherwise let a new
        viewer in to a stream that cannot reach it.
        """
        if not self._connected:
            raise redis.ConnectionError("live events are unavailable: Redis is away")
        async with self._lock:
            subscribers = self._groups.get(group)
            if subscribers is not None:
                subscribers.add(subscriber)
                waiter = self._confirmations.get(group)
            else:
                self._groups[group] = {subscriber}
                waiter = asyncio.get_running_loop().create_future()
                self._confirmations[group] = waiter
                try:
                    await self._pubsub.subscribe(CHANNEL_PREFIX + group)
                except Exception:
                    self._forget(group)
                    raise
                if self._reader is None or self._reader.done():
                    self._reader = asyncio.create_task(self._read(), name="hub-reader")
        if waiter is not None:
            try:
                await asyncio.wait_for(asyncio.shield(waiter), JOIN_TIMEOUT_SECONDS)
            except BaseException:
                await self.leave(group, subscriber)
                raise

    async def leave(self, group: str, subscriber: Subscriber) -> None:
        async with self._lock:
            subscribers = self._groups.get(group)
            if subscribers is None:
                return
            subscribers.discard(subscriber)
            if subscribers:
                return
            self._forget(group)
            try:
                await self._pubsub.unsubscribe(CHANNEL_PREFIX + group)
            except (redis.RedisError, OSError) as exc:
                # The connection is gone; it resubscribes only to live groups.
                log.info("hub: unsubscribe from %s failed (%s)", group, exc)

    def _forget(self, group: str) -> None:
        self._groups.pop(group, None)
        waiter = self._confirmations.pop(group, None)
        if waiter is not None and not waiter.done():
            waiter.cancel()

    async def _read(self) -> None:
        try:
            while self._groups or self._confirmations:
                try:
                    if self._last_heard is None or (
                        time.monotonic() - self._last_heard > PING_EVERY_SECONDS
                    ):
                        # A quiet group hears nothing: the ping's answer shows that the
                        # subscription is alive (/healthz reads _last_heard).
                        await self._pubsub.ping()
                    messages = await self._pubsub.read_messages(timeout=1.0)
                except (redis.RedisError, OSError) as exc:
                    if self._connected:
                        log.warning("hub: lost Redis (%s); reconnecting", exc)
                    self._connected = False
                    await asyncio.sleep(0.5)
                    continue
                if not messages:
                    continue
                self._last_heard = time.monotonic()
                for message in messages:
                    kind = message["type"]
                    if kind == "message":
                        await self._deliver(message["channel"], message["data"])
                    elif kind == "subscribe":
                        await self._confirmed(message["channel"].decode()[len(CHANNEL_PREFIX) :])
        finally:
            # Nobody left to tell; the next join starts a reader that finds out afresh.
            self._connected = True
            self._last_heard = None

    async def _confirmed(self, group: str) -> None:
        """Redis confirmed a subscription: one we asked for, or one redis-py renewed.

        redis-py reconnects by itself (sometimes without raising to us) and then
        subscribes again to every channel it had, so an unasked-for confirmation
        means the connection was renewed: its group may have missed messages.
        """
        if not self._connected:
            self._connected = True
            log.warning("hub: Redis is back")
        waiter = self._confirmations.pop(group, None)
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(None)
        elif group in self._groups:
            await self._notify_reconnected(group)
        else:
            # Left while Redis was away: its unsubscribe was lost, and redis-py renewed it.
            try:
                await self._pubsub.unsubscribe(CHANNEL_PREFIX + group)
            except (redis.RedisError, OSError) as exc:
                log.info("hub: unsubscribe from %s failed (%s)", group, exc)

    async def _deliver(self, channel: bytes, data: bytes) -> None:
        group = channel.decode()[len(CHANNEL_PREFIX) :]
        subscribers = self._groups.get(group)
        if not subscribers:
            return
        items = layer_items(data) if data[:1] == b"{" else decode_items(data.decode())
        if not items:
            return
        for subscriber in tuple(subscribers):
            try:
                await subscriber.hub_deliver(items)
            except Exception:
                # One broken viewer must never stop delivery to the others.
                log.exception("hub: delivery to a subscriber of %s failed", group)

    async def _notify_reconnected(self, group: str) -> None:
        # Per group, once its own subscription is confirmed again: whatever a
        # subscriber then reads from the database, later messages reach it.
        for subscriber in tuple(self._groups.get(group, ())):
            try:
                await subscriber.hub_reconnected()
            except Exception:
                log.exception("hub: reconnect notification failed")

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self._pubsub.aclose()
