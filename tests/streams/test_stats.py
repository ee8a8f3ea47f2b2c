import math
import random
import statistics

import pytest

from streams.stats import BinaryStats, NumericStats, beta_cdf, beta_quantile


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
