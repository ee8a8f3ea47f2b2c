"""Redis Cluster mode (``REDIS_CLUSTER=1``): its clients, the hub's sharded subscription, the layer.

``REDIS_URL`` names any node; redis-py's cluster clients learn the slot map from
it and send each command to the node that owns its key's slot (following MOVED
when slots move). Everything Streamsite sends is valid on a cluster: one key
per command (presence, quotas, metrics; pipelines are split by node), or one
script over keys that share a hash tag (slots: ``slots:{slots}:...``).

Groups use sharded pub/sub (Redis 7+): a group's channel lives on the node
that owns its slot, so fan-out spreads over the nodes. (Classic PUBLISH on a
cluster is copied to every node over the cluster bus, so every node carries
every group's traffic; and it never reaches an SSUBSCRIBE.)

The hub's subscription. redis-py's async ``ClusterPubSub`` does the hard part:
SSUBSCRIBE routed by slot, one connection per node that holds a subscribed
channel, subscriptions moved after a slot-map change, and after a reconnect
one SSUBSCRIBE per slot again. What it lacks is a reader that waits on every
node at once: ``get_sharded_message(timeout=t)`` asks the nodes in turn, each
for up to ``t``, so a message on the third node waits up to ``2t``.
``ShardedSubscription`` adds one reader task per node connection, feeding one
queue, and speaks the hub's PubSub dialect (``subscribe``, ``get_message`` with
``message``/``subscribe`` kinds ...), so ``streamsite.hub.Hub`` is the same
code in both modes, reconnect notices (``hub_reconnected``) included.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, cast

import redis
import redis.asyncio as aredis
from channels_redis.pubsub import RedisPubSubChannelLayer
from redis.asyncio.cluster import ClusterPipeline as AsyncClusterPipeline
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

# The sharded kinds as the hub knows them from classic pub/sub.
_KINDS = {"smessage": "message", "ssubscribe": "subscribe", "sunsubscribe": "unsubscribe"}
# How long a node reader waits for a message before looking again (its node may be gone).
_READ_SECONDS = 1.0


@contextlib.contextmanager
def redis_errors() -> Iterator[None]:
    """A cluster that cannot be reached raises RedisClusterException, which is no
    RedisError: raised as a ConnectionError, it meets every ``except redis.RedisError``
    that makes Streamsite fail open (presence, slots, the publisher) as with one Redis."""
    try:
        yield
    except RedisClusterException as exc:
        raise redis.ConnectionError(str(exc)) from exc


class SyncRedisCluster(RedisCluster):
    """redis-py's cluster client whose errors are all RedisErrors (``redis_errors``)."""

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        with redis_errors():
            return super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        pipe = super().pipeline(transaction, shard_hint)
        execute = pipe.execute

        def translated_execute(*args: Any, **kwargs: Any) -> Any:
            with redis_errors():
                return execute(*args, **kwargs)

        pipe.execute = translated_execute  # type: ignore[method-assign]
        return pipe


def sync_client(url: str, *, socket_timeout: float = 5) -> redis.Redis:
    """A cluster client for sync code (``hub.sync_client()`` in cluster mode).

    Typed as ``redis.Redis``: the commands Streamsite sends are common to both
    clients (cross-slot ones go through ``mget`` below).
    """
    with redis_errors():  # it reads the slot map at once
        client = SyncRedisCluster.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=2
        )
    return cast(redis.Redis, client)


def async_client(
    url: str,
    *,
    max_connections: int,
    socket_timeout: float | None,
    wait_seconds: float | None = None,
) -> WaitingRedisCluster:
    """A cluster client for one event loop: at most ``max_connections`` per node; with
    ``wait_seconds``, a burst waits that long for one (``WaitingRedisCluster``)."""
    client = WaitingRedisCluster.from_url(
        url,
        max_connections=max_connections,
        socket_timeout=socket_timeout,
        socket_connect_timeout=2,
    )
    assert isinstance(client, WaitingRedisCluster)  # from_url builds ``cls``
    if wait_seconds is not None:
        client.gate = Gate(max_connections, wait_seconds)
    return client


# Set inside a gated call: a command it sends itself (a pipeline resending a MOVED
# command one by one) must not wait for a second permit, or a full gate would deadlock.
_inside_gate: contextvars.ContextVar[bool] = contextvars.ContextVar("inside_gate", default=False)


class Gate:
    """At most ``size`` calls in flight; the next waits up to ``wait_seconds`` for one to end."""

    def __init__(self, size: int, wait_seconds: float | None) -> None:
        self._permits = asyncio.Semaphore(size)
        self._wait_seconds = wait_seconds

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        if _inside_gate.get():
            yield
            return
        try:
            await asyncio.wait_for(self._permits.acquire(), self._wait_seconds)
        except TimeoutError:
            # What redis-py's BlockingConnectionPool raises in the same case.
            raise redis.ConnectionError("No connection available.") from None
        token = _inside_gate.set(True)
        try:
            yield
        finally:
            _inside_gate.reset(token)
            self._permits.release()


class WaitingRedisCluster(AsyncRedisCluster):
    """redis-py's async cluster client with a blocking pool's manners.

    Its nodes have no blocking pool: past ``max_connections`` a command fails
    (MaxConnectionsError), and a burst of 300 presence entries on a fresh client
    with 4 connections per node even failed inside redis-py (AttributeError on a
    connection another command was still opening). With a ``gate`` at most
    ``max_connections`` commands or pipelines are in flight, each holding at
    most one connection per node, so no node is asked for more than it has and
    a burst waits (tests/streamsite/test_redis_cluster.py).
    """

    gate: Gate | None = None

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        with redis_errors():
            if self.gate is None:
                return await super().execute_command(*args, **kwargs)
            async with self.gate.held():
                return await super().execute_command(*args, **kwargs)

    def pipeline(
        self, transaction: Any | None = None, shard_hint: Any | None = None
    ) -> WaitingPipeline:
        if shard_hint:  # as redis-py's own pipeline()
            raise RedisClusterException("shard_hint is deprecated in cluster mode")
        return WaitingPipeline(self, transaction)  # type: ignore[abstract]  # as redis-py does


class WaitingPipeline(AsyncClusterPipeline):
    """A pipeline of WaitingRedisCluster: gated as one call, its errors RedisErrors."""

    async def initialize(self) -> WaitingPipeline:
        with redis_errors():  # the slot map, read on ``async with`` when not known yet
            await super().initialize()
        return self

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        gate = getattr(self.cluster_client, "gate", None)
        with redis_errors():
            if gate is None:
                return await super().execute(raise_on_error, allow_redirections)
            async with gate.held():
                return await super().execute(raise_on_error, allow_redirections)


def mget(client: redis.Redis, keys: Sequence[str]) -> list[Any]:
    """MGET; on a cluster, one MGET per slot (the keys of many feeds lie on many nodes)."""
    if isinstance(client, RedisCluster):
        return client.mget_nonatomic(list(keys))
    return client.mget(keys)


def is_cluster(client: object) -> bool:
    return isinstance(client, RedisCluster | AsyncRedisCluster)


class ShardedSubscription:
    """The hub's subscription on a Redis Cluster (see the module docstring)."""

    def __init__(self, client: AsyncRedisCluster) -> None:
        self._cluster = client
        self._pubsub = client.pubsub()
        self._queue: asyncio.Queue[dict[str, Any] | Exception] = asyncio.Queue()
        self._readers: dict[str, asyncio.Task[None]] = {}
        # One error waiting to be read at most: a node down for an hour must not
        # queue 7,200 of them while nobody reads (the hub reads none once idle).
        self._error_queued = False

    def node_names(self) -> list[str]:
        """The nodes this subscription holds a connection to (for tests)."""
        return list(self._pubsub.node_pubsub_mapping)

    async def subscribe(self, channel: str) -> None:
        with redis_errors():
            await self._cluster.initialize()  # the slot map; at once when known
            await self._pubsub.ssubscribe(channel)
        self._start_readers()

    async def unsubscribe(self, channel: str) -> None:
        with redis_errors():
            await self._pubsub.sunsubscribe(channel)

    async def ping(self) -> None:
        """A PING on each node's subscription: the answers show every node is alive."""
        with redis_errors():
            for node_pubsub in list(self._pubsub.node_pubsub_mapping.values()):
                await node_pubsub.ping()

    async def get_message(self, timeout: float) -> dict[str, Any] | None:  # noqa: ASYNC109 (PubSub's signature)
        """The next message or confirmation of any node; raises what a node's reader met."""
        # A slot-map change may have moved a channel to a node not read yet.
        self._start_readers()
        try:
            got = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None
        if isinstance(got, Exception):
            self._error_queued = False
            raise got
        return got

    async def read_messages(self, timeout: float) -> list[dict[str, Any]]:  # noqa: ASYNC109 (the hub's)
        """The next message or confirmation, as a list (streamsite.pubsub's way)."""
        message = await self.get_message(timeout)
        return [] if message is None else [message]

    def _start_readers(self) -> None:
        for name, node_pubsub in self._pubsub.node_pubsub_mapping.items():
            reader = self._readers.get(name)
            if reader is None or reader.done():
                self._readers[name] = asyncio.create_task(
                    self._read(name, node_pubsub), name=f"hub-reader-{name}"
                )

    async def _read(self, name: str, node_pubsub: aredis.client.PubSub) -> None:
        # Until the node's connection is dropped (its last channel left, or the slot
        # moved away): redis-py then removes it from node_pubsub_mapping.
        while self._pubsub.node_pubsub_mapping.get(name) is node_pubsub:
            node = self._cluster.get_node(node_name=name)
            if node is None:
                return
            try:
                message = await self._pubsub.get_sharded_message(
                    target_node=node, timeout=_READ_SECONDS
                )
            except RuntimeError:
                return  # closed under us ("pubsub connection not set")
            except (redis.RedisError, RedisClusterException, OSError) as exc:
                if isinstance(exc, RedisClusterException):
                    exc = redis.ConnectionError(str(exc))
                # The hub marks itself disconnected; the next read reconnects this
                # node, and redis-py subscribes again (confirmations follow).
                if not self._error_queued:
                    self._error_queued = True
                    self._queue.put_nowait(exc)
                await asyncio.sleep(0.5)
                continue
            if message is not None:
                kind = message["type"]
                message["type"] = _KINDS.get(kind, kind)
                self._queue.put_nowait(message)

    async def aclose(self) -> None:
        for reader in self._readers.values():
            reader.cancel()
        await self._pubsub.aclose()


class ClusterChannelLayer(RedisPubSubChannelLayer):
    """channels-redis's pub/sub layer whose ``group_send`` SPUBLISHes to the hub's channel.

    Only ``group_send`` reaches viewers in Streamsite (connections take no layer
    channel: streamsite/live.py), so it is the one method that changes; it goes
    through the process's cluster client in a thread, whatever loop calls it
    (``async_to_sync`` in a shell makes a loop of its own).
    """

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        from streamsite import hub

        channel = self._get_layer()._get_group_channel_name(group)
        await asyncio.to_thread(hub.sync_client().spublish, channel, self.serialize(message))
