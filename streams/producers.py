"""Built-in producers: plain classes that a command runs and a test can step once.

A producer is a loop of small steps. ``step()`` does one unit of work (sample
and persist one value, say) and returns how long to wait before the next. A
step either completes (the sample is committed and broadcast) or does nothing,
so the loop can be stopped between any two steps without losing data.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import close_old_connections
from django.utils import timezone

from streams import services
from streams.models import Producer, ProducerKind


class ConfigError(ValueError):
    pass


def _number(config: dict[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    value = config.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise ConfigError(f"{name} must be a number from {lo} to {hi}, got {value!r}")
    return float(value)


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

    def step(self) -> float:
        raise NotImplementedError

    def publish(self, value: float) -> int:
        """Persist and broadcast one sample; returns its sequence number."""
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


LOOPS: dict[str, type[ProducerLoop]] = {
    ProducerKind.BERNOULLI: BernoulliLoop,
    ProducerKind.RANDOM_WALK: RandomWalkLoop,
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
