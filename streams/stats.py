"""Running statistics of a feed, updated one sample at a time. No Django imports.

Binary feeds keep the Beta-Binomial posterior under a Beta(2, 2) prior:
alpha = 2 + successes, beta = 2 + failures. Numeric feeds keep count, mean,
variance (Welford's online algorithm), min and max. Each accumulator has a
JSON-safe ``state()`` persisted on the feed, and a ``summary()`` that is the
``stats`` object of the wire protocol.

Numeric values are bounded by ``NUMERIC_VALUE_LIMIT`` so that no statistic can
overflow, however many samples a feed takes (see there). No algorithm could
take every finite double: the variance of [1e308, -1e308] is about 2e616,
which no float can hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

from streamsite.frames import json_number

PRIOR_ALPHA = 2
PRIOR_BETA = 2
_Z975 = 1.959963984540054  # standard normal 97.5% quantile
# Above this many pseudo-counts on both sides, the Cornish-Fisher expansion is
# within ~1e-4 of the exact Beta quantile, and the exact one gets slow (the
# continued fraction needs O(sqrt(n)) terms): ingest of thousands of samples a
# second must not spend its time here.
_EXACT_QUANTILE_BELOW = 100


# The largest |value| a numeric feed takes. With every |x| <= L, Welford's
# intermediates stay small: |mean| <= L, |x - mean| <= 2L, and the sum of squared
# deviations m2 <= n * (2L)^2. For n up to 2^63 (the sequence number's own limit)
# that is under 4e219 at L = 1e100, far from the float maximum (1.8e308), with
# room for rounding; L = 1e144 would already be the edge. 1e100 is also far above
# any measurement (or count, or amount of money) anyone streams.
NUMERIC_VALUE_LIMIT = 1e100
NUMERIC_VALUE_LIMIT_TEXT = f"{NUMERIC_VALUE_LIMIT:g}".replace("e+", "e")  # "1e100"


class Accumulator(Protocol):
    def add(self, value: float) -> None: ...
    def copy(self) -> Accumulator: ...
    def state(self) -> dict[str, Any]: ...
    def summary(self) -> dict[str, Any]: ...
    def summary_json(self) -> str: ...
    def problem(self) -> str | None: ...


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _beta_continued_fraction(x: float, a: float, b: float) -> float:
    """Lentz's continued fraction for the regularized incomplete beta function."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-12:
            break
    return h


def beta_cdf(x: float, a: float, b: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(a * math.log(x) + b * math.log1p(-x) - _log_beta(a, b))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(x, a, b) / a
    return 1.0 - front * _beta_continued_fraction(1.0 - x, b, a) / b


def _cdf_and_pdf(x: float, a: float, b: float, log_beta: float) -> tuple[float, float]:
    """I_x(a, b) and the Beta density at x, sharing one exp (Newton needs both)."""
    front = math.exp(a * math.log(x) + b * math.log1p(-x) - log_beta)
    density = front / (x * (1.0 - x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(x, a, b) / a, density
    return 1.0 - front * _beta_continued_fraction(1.0 - x, b, a) / b, density


def beta_quantile(p: float, a: float, b: float, *, guess: float | None = None) -> float:
    """The x with I_x(a, b) = p: exact (Newton, kept in a bisection bracket) for small
    a, b; Cornish-Fisher above. ``guess`` (say, the previous sample's bound) saves steps."""
    mean = a / (a + b)
    var = a * b / ((a + b) ** 2 * (a + b + 1.0))
    sd = math.sqrt(var)
    z = _normal_quantile(p)
    skew = 2.0 * (b - a) * math.sqrt(a + b + 1.0) / ((a + b + 2.0) * math.sqrt(a * b))
    approximate = min(1.0 - 1e-12, max(1e-12, mean + sd * (z + skew / 6.0 * (z * z - 1.0))))
    if min(a, b) >= _EXACT_QUANTILE_BELOW:
        return approximate
    log_beta = _log_beta(a, b)
    lo, hi = 0.0, 1.0
    x = guess if guess is not None and 0.0 < guess < 1.0 else approximate
    for _ in range(100):
        cdf, density = _cdf_and_pdf(x, a, b, log_beta)
        error = cdf - p
        if error < 0:
            lo = x
        else:
            hi = x
        step = x - error / density if density > 0 else lo - 1.0
        # Newton converges in a few steps from a good guess; a step that leaves
        # the bracket falls back to bisection. Results are shown to six
        # decimals, so 1e-9 in x is plenty.
        next_x = step if lo < step < hi else (lo + hi) / 2.0
        if abs(next_x - x) < 1e-9 or hi - lo < 1e-12:
            return next_x
        x = next_x
    return x


_CI_CACHE: dict[tuple[int, int], tuple[float, float]] = {}
_CI_CACHE_SIZE = 65_536


def credible_interval_95(
    alpha: int, beta: int, *, near: tuple[float, float] | None = None
) -> tuple[float, float]:
    """Rounded equal-tailed 95% interval of Beta(alpha, beta).

    Cached: it depends only on two integers, and the small pairs, where the
    exact computation is needed, are the ones every young feed goes through.
    ``near`` is a nearby interval (the previous sample's) to start from.
    """
    found = _CI_CACHE.get((alpha, beta))
    if found is None:
        lo_guess, hi_guess = near if near is not None else (None, None)
        found = (
            round(beta_quantile(0.025, alpha, beta, guess=lo_guess), 6),
            round(beta_quantile(0.975, alpha, beta, guess=hi_guess), 6),
        )
        if len(_CI_CACHE) >= _CI_CACHE_SIZE:
            _CI_CACHE.clear()
        _CI_CACHE[(alpha, beta)] = found
    return found


def _normal_quantile(p: float) -> float:
    if p == 0.975:
        return _Z975
    if p == 0.025:
        return -_Z975
    # Acklam's rational approximation is overkill here; bisection on erf is enough.
    lo, hi = -10.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2.0
        if 0.5 * math.erfc(-mid / math.sqrt(2.0)) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


@dataclass
class BinaryStats:
    """Beta(2, 2)-prior posterior of a stream of 0/1 samples."""

    n: int = 0
    successes: int = 0
    _last_ci: tuple[float, float] | None = None

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> BinaryStats:
        state = state or {}
        return cls(n=int(state.get("n", 0)), successes=int(state.get("successes", 0)))

    def copy(self) -> BinaryStats:
        return BinaryStats(self.n, self.successes, self._last_ci)

    def add(self, value: float) -> None:
        if value not in (0, 1):
            raise ValueError("a binary feed takes 0 or 1")
        self.n += 1
        self.successes += int(value)

    def _interval(self, a: int, b: int) -> tuple[float, float]:
        self._last_ci = credible_interval_95(a, b, near=self._last_ci)
        return self._last_ci

    @property
    def alpha(self) -> int:
        return PRIOR_ALPHA + self.successes

    @property
    def beta(self) -> int:
        return PRIOR_BETA + self.n - self.successes

    def state(self) -> dict[str, Any]:
        return {"n": self.n, "successes": self.successes}

    def problem(self) -> str | None:
        """Why this state cannot be right (None when it can): a hand-edited or corrupt row."""
        if not 0 <= self.successes <= self.n:
            return f"successes={self.successes} is not between 0 and n={self.n}"
        return None

    def summary(self) -> dict[str, Any]:
        a, b = self.alpha, self.beta
        return {
            "n": self.n,
            "successes": self.successes,
            "failures": self.n - self.successes,
            "alpha": a,
            "beta": b,
            "mean": round(a / (a + b), 6),
            "ci95": list(self._interval(a, b)),
        }

    def summary_json(self) -> str:
        """``encode(self.summary())``, written out: ingest computes it for every sample
        (tests/streams/test_stats.py checks the two agree)."""
        a, b, n, successes = self.alpha, self.beta, self.n, self.successes
        lo, hi = self._interval(a, b)
        return (
            f'{{"n":{json_number(n)},"successes":{json_number(successes)},'
            f'"failures":{json_number(n - successes)},"alpha":{json_number(a)},'
            f'"beta":{json_number(b)},"mean":{json_number(round(a / (a + b), 6))},'
            f'"ci95":[{json_number(lo)},{json_number(hi)}]}}'
        )


@dataclass
class NumericStats:
    """Count, mean, sample variance (Welford), min and max of a numeric stream."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float | None = None
    max: float | None = None

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> NumericStats:
        state = state or {}
        return cls(
            n=int(state.get("n", 0)),
            mean=float(state.get("mean", 0.0)),
            m2=float(state.get("m2", 0.0)),
            min=state.get("min"),
            max=state.get("max"),
        )

    def copy(self) -> NumericStats:
        return NumericStats(self.n, self.mean, self.m2, self.min, self.max)

    def add(self, value: float) -> None:
        if not -NUMERIC_VALUE_LIMIT <= value <= NUMERIC_VALUE_LIMIT:  # also refuses NaN
            raise ValueError(
                f"a numeric feed takes numbers from -{NUMERIC_VALUE_LIMIT_TEXT} to {NUMERIC_VALUE_LIMIT_TEXT}"
            )
        self.n += 1
        delta = value - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (value - self.mean)
        self.min = value if self.min is None else min(self.min, value)
        self.max = value if self.max is None else max(self.max, value)

    @property
    def variance(self) -> float:
        return self.m2 / (self.n - 1) if self.n > 1 else 0.0

    def state(self) -> dict[str, Any]:
        return {"n": self.n, "mean": self.mean, "m2": self.m2, "min": self.min, "max": self.max}

    def problem(self) -> str | None:
        """Why this state cannot take another sample (None when it can).

        Only a state stored before values were range-checked (a feed that took
        1e308, say: the next sample overflowed its variance) or edited by hand
        fails; ``manage.py recomputestats`` rebuilds it from the stored samples.
        """
        if self.n < 0:
            return f"n={self.n} is negative"
        bounded = {"mean": self.mean, "min": self.min, "max": self.max}
        for name, number in bounded.items():
            if number is not None and not -NUMERIC_VALUE_LIMIT <= number <= NUMERIC_VALUE_LIMIT:
                return f"{name}={number!r} is outside ±{NUMERIC_VALUE_LIMIT_TEXT}"
        if self.n and (self.min is None or self.max is None):
            return "min or max is missing"
        # m2 <= n * (2L)^2 for any accepted values (see NUMERIC_VALUE_LIMIT).
        if not 0.0 <= self.m2 <= 4.0 * max(self.n, 1) * NUMERIC_VALUE_LIMIT**2:
            return f"m2={self.m2!r} is not a sum of squared deviations of accepted values"
        return None

    def summary(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "mean": self.mean,
            "variance": self.variance,
            "min": self.min,
            "max": self.max,
        }

    def summary_json(self) -> str:
        """``encode(self.summary())``, written out (see BinaryStats.summary_json)."""
        return (
            f'{{"n":{json_number(self.n)},"mean":{json_number(self.mean)},'
            f'"variance":{json_number(self.variance)},"min":{json_number(self.min)},'
            f'"max":{json_number(self.max)}}}'
        )


def accumulator_for(kind: str, state: dict[str, Any] | None) -> BinaryStats | NumericStats:
    if kind == "binary":
        return BinaryStats.from_state(state)
    if kind == "numeric":
        return NumericStats.from_state(state)
    raise ValueError(f"unknown feed kind {kind!r}")
