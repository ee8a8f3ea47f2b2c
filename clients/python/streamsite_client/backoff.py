"""Exponential backoff with jitter, and the close-code table that drives it."""

from __future__ import annotations

import random
from dataclasses import dataclass

from streamsite_client.errors import GaveUp


@dataclass(frozen=True)
class Backoff:
    """Delays between reconnection attempts.

    The n-th consecutive failure waits ``d = min(maximum, initial * multiplier**n)``,
    less a random part of up to ``jitter * d`` so that many clients cut off at once
    do not come back at once. A close that asks for patience (1011, 1013, an HTTP
    error at the handshake) counts as ``slow_start`` failures at least. After
    ``max_attempts`` failures in a row (None: never) the client raises GaveUp.
    A connection that works resets the count.
    """

    initial: float = 0.5
    maximum: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5
    slow_start: int = 3
    max_attempts: int | None = None

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        exponent = max(0, failures - 1)
        ceiling = min(self.maximum, self.initial * self.multiplier**exponent)
        spread = ceiling * min(max(self.jitter, 0.0), 1.0)
        return ceiling - (rng or random).uniform(0.0, spread)


class Retry:
    """Counts consecutive failures of one connection and says how long to wait."""

    def __init__(self, backoff: Backoff) -> None:
        self.backoff = backoff
        self.failures = 0

    def succeeded(self) -> None:
        self.failures = 0

    def failed(self, reason: str, *, slow: bool = False) -> float:
        """Seconds to wait before the next attempt; raises GaveUp past max_attempts."""
        self.failures += 1
        limit = self.backoff.max_attempts
        if limit is not None and self.failures >= limit:
            raise GaveUp(self.failures, reason)
        failures = max(self.failures, self.backoff.slow_start) if slow else self.failures
        return self.backoff.delay(failures)
