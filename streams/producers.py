"""Built-in producers: plain classes that a command runs and a test can step once.

A producer is a loop of small steps. ``step()`` does one unit of work (sample
and persist one value, say) and returns how long to wait before the next. A
step either completes (the sample is committed and broadcast) or does nothing,
so the loop can be stopped between any two steps without losing data.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import redis
from django.conf import settings
from django.db import close_old_connections, transaction
from django.utils import timezone

from streams import events, leases, selectors, services
from streams.models import Feed, Producer, ProducerKind, Sample
from streamsite import hub

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    pass


class ProducerFinished(Exception):
    """The producer has done all it was asked to (a clock after `count` ticks)."""


def _number(config: dict[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    value = config.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise ConfigError(f"{name} must be a number from {lo} to {hi}, got {value!r}")
    return float(value)


def _feed_uuid(config: dict[str, Any], name: str) -> str:
    try:
        return str(uuid.UUID(str(config.get(name))))
    except ValueError:
        raise ConfigError(f"{name} must be a feed UUID, got {config.get(name)!r}") from None


# Config fields that name another feed (of the same tenant), by kind.
FEED_FIELDS: dict[str, tuple[str, ...]] = {
    ProducerKind.CLOCK: ("ack_feed",),
    ProducerKind.IOPIN: ("source",),
    ProducerKind.BUZZER: ("source",),
}


def validate_config(kind: str, config: dict[str, Any] | None) -> dict[str, Any]:
    """The producer's config with defaults filled in; ConfigError names a bad field."""
    config = dict(config or {})
    if not isinstance(config, dict):
        raise ConfigError("config must be a JSON object")
    if kind == ProducerKind.BERNOULLI:
        config["p"] = _number(config, "p", 0.72, 0.0, 1.0)
        config["interval_ms"] = _number(config, "interval_ms", 100, 1, 3_600_000)
    elif kind == ProducerKind.RANDOM_WALK:
        config["step"] = _number(config, "step", 1.0, 0.0, 1e12)
        config["start"] = _number(config, "start", 0.0, -1e12, 1e12)
        config["interval_ms"] = _number(config, "interval_ms", 100, 1, 3_600_000)
    elif kind == ProducerKind.CLOCK:
        config["interval_ms"] = _number(config, "interval_ms", 1000, 1, 3_600_000)
        config["count"] = int(_number(config, "count", 0, 0, 1e12))
        config["ack_timeout_ms"] = _number(config, "ack_timeout_ms", 5000, 1, 3_600_000)
        if config.get("ack_feed") is not None:
            config["ack_feed"] = _feed_uuid(config, "ack_feed")
    elif kind == ProducerKind.IOPIN:
        config["source"] = _feed_uuid(config, "source")
        config["chance"] = _number(config, "chance", 0.5, 0.0, 1.0)
    elif kind == ProducerKind.BUZZER:
        config["source"] = _feed_uuid(config, "source")
    elif kind == ProducerKind.EXTERNAL:
        pass
    else:
        raise ConfigError(f"no built-in loop for producer kind {kind!r}")
    return config


class ProducerLoop:
    """One producer's work. Subclasses implement ``step``."""

    def __init__(self, producer: Producer, *, rng: random.Random | None = None) -> None:
        self.producer = producer
        self.feed = producer.feed
        self.config = validate_config(producer.kind, producer.config)
        self.rng = rng or random.Random()
        # Set by runproducer: the lease this loop writes under (streams/leases.py).
        self.lease_holder: str | None = None

    def step(self) -> float:
        raise NotImplementedError

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """One step's writes, in one transaction fenced by the lease when there is one
        (leases.LeaseLost: nothing of it is written and the loop must stop)."""
        with transaction.atomic():
            if self.lease_holder is not None:
                leases.lease_fence(producer_id=self.producer.pk, holder=self.lease_holder)
            yield

    def publish(self, value: float) -> int:
        """Persist and broadcast one sample; returns its sequence number."""
        with self.writing():
            (sample,) = services.samples_append(feed=self.feed, values=[(value, time.time())])
        return sample.seq


class BernoulliLoop(ProducerLoop):
    """1 with probability p, else 0, every interval_ms (defaults 0.72 and 100 ms)."""

    def step(self) -> float:
        self.publish(1 if self.rng.random() < self.config["p"] else 0)
        return self.config["interval_ms"] / 1000


class RandomWalkLoop(ProducerLoop):
    """A Gaussian random walk: each sample is the last plus N(0, step)."""

    def __init__(self, producer: Producer, *, rng: random.Random | None = None) -> None:
        super().__init__(producer, rng=rng)
        self.position = self.config["start"]

    def step(self) -> float:
        self.position += self.rng.gauss(0.0, self.config["step"])
        self.publish(self.position)
        return self.config["interval_ms"] / 1000


def same_tenant_feed(producer: Producer, feed_uuid: str) -> Feed:
    """A feed a producer may listen to: only its own tenant's."""
    feed = Feed.objects.filter(uuid=feed_uuid, tenant_id=producer.tenant_id).first()
    if feed is None:
        raise ConfigError(f"no feed {feed_uuid} in tenant {producer.tenant}")
    return feed


class FeedFollower:
    """Reads another feed's new samples in order, woken by its live events.

    The database is read after every wake-up and at least every poll interval,
    so nothing is missed while Redis is away: live events only make it prompt.
    """

    def __init__(self, feed: Feed, *, after_seq: int) -> None:
        self.feed = feed
        self.after_seq = after_seq
        self._pubsub: redis.client.PubSub | None = None

    def _subscribe(self) -> None:
        if self._pubsub is None:
            try:
                pubsub = hub.sync_client().pubsub(ignore_subscribe_messages=True)
                channel = hub.CHANNEL_PREFIX + events.feed_group(self.feed.uuid)
                if settings.REDIS_CLUSTER:
                    pubsub.ssubscribe(channel)  # the hub's groups are shard channels there
                else:
                    pubsub.subscribe(channel)
                self._pubsub = pubsub
            except redis.RedisError as exc:
                log.warning("follower of %s: no live events (%s); polling", self.feed.uuid, exc)

    def wait(self, timeout: float) -> list[Sample]:
        """The samples after the last one returned; waits up to ``timeout`` s for some."""
        self._subscribe()
        deadline = time.monotonic() + timeout
        while True:
            samples = selectors.samples_after(self.feed.pk, self.after_seq, limit=500)
            if samples:
                self.after_seq = samples[-1].seq
                return samples
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            try:
                if self._pubsub is None:
                    time.sleep(min(remaining, 0.2))
                elif settings.REDIS_CLUSTER:
                    self._pubsub.get_sharded_message(timeout=min(remaining, 0.5))
                else:
                    self._pubsub.get_message(timeout=min(remaining, 0.5))
            except redis.RedisError:
                self._pubsub = None
                time.sleep(min(remaining, 0.2))

    def close(self) -> None:
        if self._pubsub is not None:
            self._pubsub.close()


class ListeningLoop(ProducerLoop):
    """A producer that reacts to each sample of a source feed (``config["source"]``)."""

    poll_seconds = 0.5

    def __init__(self, producer: Producer, *, rng: random.Random | None = None) -> None:
        super().__init__(producer, rng=rng)
        source = same_tenant_feed(producer, self.config["source"])
        self.follower = FeedFollower(source, after_seq=producer.cursor)

    def step(self) -> float:
        for sample in self.follower.wait(self.poll_seconds):
            # What this produces and how far it has read commit together: a
            # restart neither repeats nor skips a source sample.
            with self.writing():
                self.react(sample)
                Producer.objects.filter(pk=self.producer.pk).update(cursor=sample.seq)
        return 0.0

    def react(self, sample: Sample) -> None:
        raise NotImplementedError

    def last_own_value(self) -> float | None:
        latest = selectors.recent_samples(self.feed.pk, limit=1)
        return latest[0].value if latest else None


class IoPinLoop(ListeningLoop):
    """On each clock tick, publishes the pin state (0/1), toggled with probability ``chance``.

    The pin sample keeps the tick's ``ts``, which is how a tick and the pin
    state it caused are matched downstream.
    """

    def __init__(self, producer: Producer, *, rng: random.Random | None = None) -> None:
        super().__init__(producer, rng=rng)
        self.state = int(self.last_own_value() or 0)

    def react(self, sample: Sample) -> None:
        if self.rng.random() < self.config["chance"]:
            self.state = 1 - self.state
        services.samples_append(feed=self.feed, values=[(self.state, sample.ts)])


class BuzzerLoop(ListeningLoop):
    """Buzzes (publishes 1, with the pin sample's ``ts``) each time the pin flips from 0 to 1."""

    def __init__(self, producer: Producer, *, rng: random.Random | None = None) -> None:
        super().__init__(producer, rng=rng)
        previous = Sample.objects.filter(feed=self.follower.feed, seq=producer.cursor).values_list(
            "value", flat=True
        )
        self.pin = int(previous[0]) if previous else 0

    def react(self, sample: Sample) -> None:
        if self.pin == 0 and sample.value == 1:
            services.samples_append(feed=self.feed, values=[(1, sample.ts)])
        self.pin = int(sample.value)


class ClockLoop(ProducerLoop):
    """Ticks (publishes the tick number) every interval and waits for its acknowledgement.

    A tick is acknowledged once it is durable; with ``ack_feed`` (say, the pin
    fed by this clock), also once that feed has published a sample for this
    tick (same ``ts``), up to ``ack_timeout_ms``. After ``count`` ticks (0:
    never) the clock is finished.
    """

    def __init__(self, producer: Producer, *, rng: random.Random | None = None) -> None:
        super().__init__(producer, rng=rng)
        self.ticks = Feed.objects.get(pk=self.feed.pk).last_seq
        self.acks: FeedFollower | None = None
        if self.config.get("ack_feed"):
            ack_feed = same_tenant_feed(producer, self.config["ack_feed"])
            self.acks = FeedFollower(ack_feed, after_seq=ack_feed.last_seq)

    def step(self) -> float:
        if self.config["count"] and self.ticks >= self.config["count"]:
            raise ProducerFinished(f"{self.ticks} ticks done")
        ts = time.time()
        with self.writing():
            services.samples_append(feed=self.feed, values=[(self.ticks + 1, ts)])
        self.ticks += 1
        if self.acks is not None:
            self.wait_for_ack(self.acks, ts)
        return self.config["interval_ms"] / 1000

    def wait_for_ack(self, acks: FeedFollower, ts: float) -> None:
        deadline = time.monotonic() + self.config["ack_timeout_ms"] / 1000
        while (remaining := deadline - time.monotonic()) > 0:
            if any(sample.ts == ts for sample in acks.wait(min(remaining, 0.5))):
                return
        log.warning("clock %s: tick %s not acknowledged in time", self.producer, self.ticks)


LOOPS: dict[str, type[ProducerLoop]] = {
    ProducerKind.BERNOULLI: BernoulliLoop,
    ProducerKind.RANDOM_WALK: RandomWalkLoop,
    ProducerKind.CLOCK: ClockLoop,
    ProducerKind.IOPIN: IoPinLoop,
    ProducerKind.BUZZER: BuzzerLoop,
}


def loop_for(producer: Producer) -> ProducerLoop:
    try:
        loop_class = LOOPS[producer.kind]
    except KeyError:
        raise ConfigError(f"producer kind {producer.kind!r} has no built-in loop") from None
    return loop_class(producer)


def run_until_stopped(
    loop: ProducerLoop,
    stop: threading.Event,
    *,
    on_step: Callable[[], None] | None = None,
    heartbeat_seconds: float = 5.0,
) -> None:
    """Step the loop on a fixed schedule until ``stop`` is set.

    The schedule does not drift (deadlines advance by the step's interval), but
    after a stall it restarts from now instead of bursting to catch up.
    """
    next_at = time.monotonic()
    next_heartbeat = 0.0
    while not stop.is_set():
        close_old_connections()
        delay = loop.step()
        if on_step is not None:
            on_step()
        now = time.monotonic()
        if now >= next_heartbeat:
            Producer.objects.filter(pk=loop.producer.pk).update(
                last_seen_at=timezone.now(), status="running"
            )
            next_heartbeat = now + heartbeat_seconds
        next_at = max(next_at + delay, now)
        stop.wait(max(0.0, next_at - time.monotonic()))
