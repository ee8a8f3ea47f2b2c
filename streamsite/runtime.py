"""One live runtime per event loop: the hub, presence, the ingest writer, the metrics flusher.

Everything an event loop of a Streamsite process does with Redis goes through
the one connection pool owned here (``Runtime.redis``): the hub's pub/sub
subscription, presence, connection slots and quotas, and the metrics flusher.
Before, each of them had a client of its own with redis-py's default pool,
which raises "Too many connections" past 100 connections: 1,000 viewers
arriving 100 handshakes at a time made presence fail 900 times.

The pool is a ``BlockingConnectionPool``: a burst waits for a connection
(at most ``REDIS_POOL_TIMEOUT_SECONDS``) instead of failing. It holds at most
``REDIS_POOL_SIZE`` connections, for commands. Pub/sub needs a connection of
its own for as long as anything is subscribed, so the hub's subscription has
one dedicated connection beside the pool (streamsite.pubsub, so a burst of
commands can never take it): at most ``REDIS_POOL_SIZE + 1`` connections per
event loop, whatever arrives.

Sync code (services after commit, the admin, commands) keeps its own client,
``hub.sync_client()``: it runs in threads, not on an event loop.

On a Redis Cluster (``cluster=True``, settings.REDIS_CLUSTER) the commands go
through one async cluster client with at most ``REDIS_POOL_SIZE`` connections
per node, and at most that many commands in flight, so a burst waits as it
does here (redis-py's cluster client has no blocking pool of its own:
``streamsite.cluster.WaitingRedisCluster``); the hub has a cluster client of
its own (one subscription connection per node).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any, cast

import redis.asyncio as aredis
from django.conf import settings

from streams.ingest import IngestWriter
from streamsite import cluster as redis_cluster
from streamsite import metrics
from streamsite.batch import CommandBatch
from streamsite.hub import Hub
from streamsite.presence import Presence

# The hub's subscription, beside REDIS_POOL_SIZE connections for commands.
PUBSUB_CONNECTIONS = 1


def connection_pool(url: str, *, size: int, timeout: float | None) -> aredis.BlockingConnectionPool:
    """A pool that makes a burst wait for a free connection instead of failing."""
    return aredis.BlockingConnectionPool.from_url(
        url, max_connections=size, timeout=timeout, socket_connect_timeout=2, socket_timeout=5
    )


class Runtime:
    """The live machinery of one event loop, sharing one Redis connection pool."""

    _instances: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Runtime] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 50,
        pool_timeout: float | None = 10.0,
        cluster: bool = False,
    ):
        self.pool: aredis.BlockingConnectionPool | None = None
        self._cluster: redis_cluster.WaitingRedisCluster | None = None
        self._hub_cluster: redis_cluster.WaitingRedisCluster | None = None
        if cluster:
            self._cluster = redis_cluster.async_client(
                url, max_connections=pool_size, socket_timeout=5, wait_seconds=pool_timeout
            )
            # Typed as the one client the code is written against: the commands sent
            # are common to both (streamsite/cluster.py).
            self.redis = cast(aredis.Redis, self._cluster)
            # No socket timeout on the subscription: it is quiet between messages.
            self._hub_cluster = redis_cluster.async_client(
                url, max_connections=PUBSUB_CONNECTIONS, socket_timeout=None
            )
            self.hub = Hub(self._hub_cluster)
        else:
            self.pool = connection_pool(url, size=pool_size, timeout=pool_timeout)
            self.redis = aredis.Redis(connection_pool=self.pool)
            # The subscription is a connection of its own (streamsite.pubsub).
            self.hub = Hub(url)
        # Commands of one loop pass in one pipeline: caps and presence (streamsite/batch.py).
        self.batch = CommandBatch(self.redis)
        self.presence = Presence(self.redis, self.batch)
        self.ingest = IngestWriter()
        self.metrics = metrics.Flusher(self.redis)

    @classmethod
    def for_loop(cls) -> Runtime:
        """This event loop's runtime, created on first use (call from a coroutine)."""
        loop = asyncio.get_running_loop()
        runtime = cls._instances.get(loop)
        if runtime is None:
            runtime = cls._instances[loop] = cls(
                settings.REDIS_URL,
                pool_size=settings.REDIS_POOL_SIZE,
                pool_timeout=settings.REDIS_POOL_TIMEOUT_SECONDS,
                cluster=settings.REDIS_CLUSTER,
            )
        return runtime

    async def ping(self) -> bool:
        """A PING through the command pool; on a cluster, one to every primary (each
        owns slots the live path uses)."""
        if self._cluster is not None:
            nodes = redis_cluster.AsyncRedisCluster.PRIMARIES
            return bool(await self._cluster.ping(target_nodes=nodes))
        return bool(await self.redis.ping())

    def pool_status(self) -> dict[str, Any]:
        """The command pool's connections: in use, open (in use or idle), the cap.

        On a cluster, summed over the nodes (the cap is per node, times the nodes).
        """
        if self._cluster is not None:
            # ClusterNode keeps these two lists (tests/streamsite/test_runtime.py).
            nodes = self._cluster.get_nodes()
            opened = sum(len(node._connections) for node in nodes)
            idle = sum(len(node._free) for node in nodes)
            per_node = self._cluster.get_default_node().max_connections if nodes else 0
            return {"in_use": opened - idle, "open": opened, "max": per_node * len(nodes)}
        pool = self.pool
        assert pool is not None
        # redis-py has no public counters; it keeps these two collections on the
        # pool (tests/streamsite/test_runtime.py fails if an upgrade renames them).
        in_use = len(pool._in_use_connections)
        return {
            "in_use": in_use,
            "open": in_use + len(pool._available_connections),
            "max": pool.max_connections,
        }

    async def close(self) -> None:
        self.metrics.stop()
        await self.hub.close()
        await self.redis.aclose()
        if self.pool is not None:
            await self.pool.disconnect()
        if self._hub_cluster is not None:
            await self._hub_cluster.aclose()
