"""Operational counters, summed over every Streamsite process, in Prometheus text format.

Counting must cost nothing on the hot path, so each process counts in plain
module-level integers and a background task writes its totals to a Redis hash
``metrics:proc:<id>`` every FLUSH seconds (expiring when the process is gone).
``/metrics`` sums the live processes (on a Redis Cluster its SCAN visits every
node, and the per-feed counters are read one slot at a time). Per-feed sample rates come from per-minute
counters that the publishing process increments with each batch.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import Iterable

import redis
import redis.asyncio as aredis
from django.conf import settings
from redis.typing import EncodableT

from streamsite import cluster, hub

log = logging.getLogger(__name__)

FLUSH_SECONDS = 5.0
PROCESS_TTL_SECONDS = 30

# name -> (type, help). Gauges are summed over processes like counters.
METRICS: dict[str, tuple[str, str]] = {
    "connections_open": ("gauge", "Open WebSocket connections, by kind."),
    "frames_in_total": ("counter", "WebSocket frames received from clients."),
    "frames_out_total": ("counter", "WebSocket frames sent to clients."),
    "viewers_resynced_total": ("counter", "Viewers told to resync (samples no longer kept)."),
    "viewers_dropped_total": ("counter", "Viewers disconnected for falling too far behind."),
    "connections_revoked_total": ("counter", "Connections closed after an access change."),
    "producer_restarts_total": ("counter", "Producers restarted by runproducers after a crash."),
    "http_bodies_refused_total": ("counter", "HTTP requests refused (413) for their body size."),
    "limit_refusals_total": (
        "counter",
        "Connections, frames and requests refused by a quota or connection cap, by limit.",
    ),
}

_counts: Counter[str] = Counter()
_process_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def key(name: str, kind: str = "") -> str:
    return f"{name}|{kind}"


def inc(name: str, amount: int = 1, *, kind: str = "") -> None:
    _counts[key(name, kind)] += amount


def bump(counter_key: str) -> None:
    """The hot-path form of inc: a precomputed key, one dict update."""
    _counts[counter_key] += 1


def inc_shared(name: str, amount: int = 1) -> None:
    """For short-lived or sync processes (runproducers): count straight into Redis."""
    try:
        hub.sync_client().hincrby("metrics:global", f"{name}|", amount)
    except redis.RedisError as exc:
        log.info("metrics: could not count %s (%s)", name, exc)


# A minute's counter is read in the next minute (samples_last_full_minute).
SAMPLES_KEY_TTL_SECONDS = 180


def samples_key(feed_uuid: str, minute: int) -> str:
    return f"metrics:samples:{feed_uuid}:{minute}"


def samples_counter(feed_uuid: str, amount: int) -> hub.Counter:
    """``amount`` more samples in the feed's counter of this minute (for hub.publish_many,
    which adds it within a second)."""
    return samples_key(feed_uuid, int(time.time() // 60)), amount, SAMPLES_KEY_TTL_SECONDS


def samples_last_full_minute(feed_uuid: str) -> int:
    """Samples the feed persisted during the last full minute (for the admin)."""
    value = hub.sync_client().get(samples_key(feed_uuid, int(time.time() // 60) - 1))
    return int(value or 0)


class Flusher:
    """Writes this process's totals to Redis every FLUSH seconds, from one event loop.

    Owned by streamsite.runtime.Runtime; ``ensure_running`` starts this loop's.
    """

    def __init__(self, client: aredis.Redis) -> None:
        self._redis = client
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def ensure_running(cls) -> None:
        from streamsite.runtime import Runtime

        Runtime.for_loop().metrics.start()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name="metrics-flush")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self.flush()
            except (redis.RedisError, OSError) as exc:
                log.info("metrics: flush failed (%s)", exc)

    async def flush(self) -> None:
        snapshot = _snapshot()
        if snapshot:
            async with self._redis.pipeline(transaction=False) as pipe:
                _write_snapshot(pipe, snapshot)
                await pipe.execute()


def _snapshot() -> dict[EncodableT, EncodableT]:
    return {name: str(value) for name, value in _counts.items()}


def _write_snapshot(
    pipe: redis.client.Pipeline | aredis.client.Pipeline, snapshot: dict[EncodableT, EncodableT]
) -> None:
    key = f"metrics:proc:{_process_id}"
    pipe.hset(key, mapping=snapshot)
    pipe.expire(key, PROCESS_TTL_SECONDS)


def flush() -> None:
    """The sync form, for processes without an event loop."""
    snapshot = _snapshot()
    if snapshot:
        with hub.sync_client().pipeline(transaction=False) as pipe:
            _write_snapshot(pipe, snapshot)
            pipe.execute()


def label_value(text: str) -> str:
    """``text`` as a label value of the Prometheus text exposition format.

    Backslash, double quote and line feed are the three characters the format
    escapes; left alone, a feed named ``x"} 1\nforged 1`` would end the label
    and write lines of its own.
    """
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(kind: str) -> str:
    return f'{{kind="{label_value(kind)}"}}' if kind else ""


def _text(stored: bytes | str) -> str:
    # The clients here return bytes (no decode_responses); the stubs allow either.
    return stored.decode() if isinstance(stored, bytes) else stored


def render(client: redis.Redis, feed_names: dict[str, str]) -> str:
    """Prometheus text exposition of every process's totals and per-feed rates."""
    totals: Counter[str] = Counter()
    for key in client.scan_iter("metrics:proc:*", count=500):
        for stored, count in client.hgetall(key).items():
            totals[_text(stored)] += int(count)
    for stored, count in client.hgetall("metrics:global").items():
        totals[_text(stored)] += int(count)
    lines: list[str] = []
    for name, (kind, help_text) in METRICS.items():
        lines += [f"# HELP streamsite_{name} {help_text}", f"# TYPE streamsite_{name} {kind}"]
        series = sorted((f, v) for f, v in totals.items() if f.split("|")[0] == name)
        for field, value in series or [(f"{name}|", 0)]:
            lines.append(f"streamsite_{name}{_labels(field.split('|', 1)[1])} {value}")
    lines += list(_feed_rates(client, feed_names))
    return "\n".join(lines) + "\n"


def _feed_rates(client: redis.Redis, feed_names: dict[str, str]) -> Iterable[str]:
    yield "# HELP streamsite_feed_samples_per_second Samples persisted per second, last full minute."
    yield "# TYPE streamsite_feed_samples_per_second gauge"
    last_minute = int(time.time() // 60) - 1
    keys = [samples_key(feed_uuid, last_minute) for feed_uuid in feed_names]
    values = cluster.mget(client, keys) if keys else []
    for (feed_uuid, name), value in zip(feed_names.items(), values, strict=True):
        if value is not None:
            rate = int(value) / 60
            labels = f'feed="{label_value(feed_uuid)}",name="{label_value(name)}"'
            yield f"streamsite_feed_samples_per_second{{{labels}}} {rate:.3f}"


def redis_client() -> redis.Redis:
    if settings.REDIS_CLUSTER:
        # The process's one cluster client: a new one would read the slot map each time.
        return hub.sync_client()
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
