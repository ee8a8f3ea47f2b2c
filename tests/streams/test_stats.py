import json
import math
import random
import statistics
import sys
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.stats import (
    NUMERIC_VALUE_LIMIT,
    BinaryStats,
    NumericStats,
    beta_cdf,
    beta_quantile,
)
from streamsite.frames import encode


def test_posterior_starts_at_the_beta_2_2_prior():
    summary = BinaryStats().summary()
    assert (summary["alpha"], summary["beta"], summary["mean"]) == (2, 2, 0.5)


def test_each_sample_adds_one_to_alpha_or_beta():
    stats = BinaryStats()
    for value in [1, 1, 0, 1]:
        stats.add(value)
    summary = stats.summary()
    assert (summary["alpha"], summary["beta"]) == (2 + 3, 2 + 1)
    assert summary["mean"] == pytest.approx(5 / 8)


def test_binary_stats_refuse_values_other_than_0_and_1():
    with pytest.raises(ValueError):
        BinaryStats().add(0.5)


@pytest.mark.parametrize("a,b", [(2, 2), (3, 7), (40, 12), (99, 99), (150, 60), (7200, 2800)])
def test_credible_interval_holds_95_percent_of_the_posterior(a, b):
    lo, hi = beta_quantile(0.025, a, b), beta_quantile(0.975, a, b)
    assert beta_cdf(hi, a, b) - beta_cdf(lo, a, b) == pytest.approx(0.95, abs=2e-4)
    assert beta_cdf(lo, a, b) == pytest.approx(0.025, abs=2e-4)


def test_uniform_quantiles_are_exact():
    assert beta_quantile(0.025, 1, 1) == pytest.approx(0.025, abs=1e-8)


def test_beta_cdf_is_symmetric_for_equal_parameters():
    assert beta_cdf(0.5, 5, 5) == pytest.approx(0.5, abs=1e-12)
    assert beta_cdf(0.3, 4, 9) == pytest.approx(1 - beta_cdf(0.7, 9, 4), abs=1e-12)


def test_numeric_stats_match_the_statistics_module():
    rng = random.Random(7)
    values = [rng.gauss(10, 3) for _ in range(1000)]
    stats = NumericStats()
    for value in values:
        stats.add(value)
    assert stats.n == 1000
    assert stats.mean == pytest.approx(statistics.fmean(values), rel=1e-12)
    assert stats.variance == pytest.approx(statistics.variance(values), rel=1e-9)
    assert (stats.min, stats.max) == (min(values), max(values))


def test_numeric_state_round_trips_through_json_state():
    stats = NumericStats()
    for value in [1.0, 2.0, 4.0]:
        stats.add(value)
    again = NumericStats.from_state(stats.state())
    again.add(8.0)
    stats.add(8.0)
    assert again.summary() == stats.summary()


def test_numeric_stats_refuse_non_finite_values():
    with pytest.raises(ValueError):
        NumericStats().add(math.inf)


# -- the numeric accumulator under any accepted values ----------------------

accepted = st.floats(min_value=-NUMERIC_VALUE_LIMIT, max_value=NUMERIC_VALUE_LIMIT, allow_nan=False)


def exact_mean_and_variance(values: list[float]) -> tuple[Fraction, Fraction]:
    exact = [Fraction(v) for v in values]
    mean = sum(exact) / len(exact)
    variance = sum((x - mean) ** 2 for x in exact) / (len(exact) - 1) if len(exact) > 1 else 0
    return mean, Fraction(variance)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(accepted, st.booleans()), min_size=1, max_size=200))
def test_any_accepted_values_keep_every_statistic_finite_and_right(draws):
    """As ingest does, the state goes through JSON between batches (here: when the
    drawn boolean says so); every summary must encode and match an exact recomputation."""
    stats, values = NumericStats(), []
    for value, store_and_reload in draws:
        stats.add(value)
        values.append(value)
        encode(stats.summary())  # raises on a non-finite number, as ingest would
        assert stats.problem() is None
        if store_and_reload:
            stats = NumericStats.from_state(json.loads(json.dumps(stats.state())))
    summary = stats.summary()
    mean, variance = exact_mean_and_variance(values)
    # Floating point is exact to within a few ulps of the data's scale, not of the
    # result: the variance of [1e100, 1e100 + 1e84] is below what 1e100 can resolve,
    # and that of [0, 1e-200] (1e-400) below the smallest float.
    scale = Fraction(max(abs(v) for v in values))
    n = len(values)
    tiniest = Fraction(sys.float_info.min)
    assert summary["n"] == n
    assert abs(Fraction(summary["mean"]) - mean) <= n * (Fraction(1e-15) * scale + tiniest)
    assert abs(Fraction(summary["variance"]) - variance) <= n * (
        Fraction(1e-14) * scale**2 + tiniest
    )
    assert (summary["min"], summary["max"]) == (min(values), max(values))
    assert summary["variance"] >= 0


def test_the_reviewers_values_no_longer_overflow_the_variance_they_are_refused():
    stats = NumericStats()
    for value in [1e200, -1e200, 1e308]:
        with pytest.raises(ValueError, match="1e100"):
            stats.add(value)
    assert stats.n == 0


def test_values_at_the_limit_for_ever_keep_the_variance_finite():
    stats = NumericStats(n=2**62, mean=0.0, m2=4.0 * 2**62 * NUMERIC_VALUE_LIMIT**2)
    for value in [NUMERIC_VALUE_LIMIT, -NUMERIC_VALUE_LIMIT] * 10:
        stats.add(value)
        encode(stats.summary())
    assert math.isfinite(stats.variance) and stats.problem() is None


@pytest.mark.parametrize(
    "state,problem",
    [
        ({"n": 1, "mean": 1e308, "m2": 0.0, "min": 1e308, "max": 1e308}, "mean=1e+308"),
        ({"n": 2, "mean": 0.0, "m2": math.inf, "min": -1.0, "max": 1.0}, "m2=inf"),
        ({"n": 2, "mean": math.nan, "m2": 1.0, "min": -1.0, "max": 1.0}, "mean=nan"),
        ({"n": 2, "mean": 0.0, "m2": -1.0, "min": -1.0, "max": 1.0}, "m2=-1.0"),
    ],
)
def test_a_stored_state_that_cannot_take_a_sample_says_why(state, problem):
    assert problem in NumericStats.from_state(state).problem()


def test_a_fresh_or_sound_state_has_no_problem():
    assert NumericStats().problem() is None
    assert BinaryStats(n=3, successes=2).problem() is None
    assert "successes" in BinaryStats(n=1, successes=2).problem()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([0, 1]), max_size=400))
def test_binary_summary_json_is_the_encoded_summary(values):
    # Ingest stores summary_json() with every sample; viewers and replays read it as
    # the summary: the two must be the same text, byte for byte.
    stats = BinaryStats()
    assert stats.summary_json() == encode(stats.summary())
    for value in values:
        stats.add(value)
        twin = stats.copy()
        assert stats.summary_json() == encode(twin.summary())


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.integers(-(10**6), 10**6),
            st.floats(-NUMERIC_VALUE_LIMIT, NUMERIC_VALUE_LIMIT, allow_nan=False),
        ),
        max_size=50,
    )
)
def test_numeric_summary_json_is_the_encoded_summary(values):
    stats = NumericStats()
    assert stats.summary_json() == encode(stats.summary())
    for value in values:
        stats.add(value)
        assert stats.summary_json() == encode(stats.summary())
    # From a stored state too (min and max come back from JSON as they were stored).
    again = NumericStats.from_state(json.loads(json.dumps(stats.state())))
    assert again.summary_json() == encode(again.summary())


def test_summary_json_refuses_what_encode_refuses():
    stats = NumericStats(n=2, mean=1.0, m2=math.inf, min=0.0, max=2.0)
    with pytest.raises(ValueError):
        encode(stats.summary())
    with pytest.raises(ValueError):
        stats.summary_json()
