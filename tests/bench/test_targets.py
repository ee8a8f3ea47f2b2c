"""The benchmark's Streamsite server runs with its caps and quotas out of the way.

The workloads are far past one tenant's production quotas from one address
(10,000 viewers of one share key, 200 feeds, ~20,000 samples a second): with
the defaults they would measure refusals, not throughput.
"""

from __future__ import annotations

import pytest

from bench.run import FULL, with_changes
from bench.targets import BENCH_LIMITS
from streamsite import settings as defaults


def test_the_bench_server_allows_every_workload_its_connections_feeds_and_rate():
    def limit(name: str) -> int:
        return int(BENCH_LIMITS[name])

    viewers = max(
        FULL["idle"]["connections"],
        FULL["fanout"]["viewers"],
        FULL["feeds"]["count"] * FULL["feeds"]["viewers_per_feed"],
    )
    assert limit("MAX_CONNECTIONS_PER_ADDRESS") > viewers > defaults.MAX_CONNECTIONS_PER_ADDRESS
    assert limit("MAX_CONNECTIONS_PER_SHARE_KEY") > viewers
    # Every workload's feeds live in one tenant and one database for the whole run.
    assert limit("QUOTA_MAX_FEEDS") > FULL["feeds"]["count"] + len(FULL)
    assert limit("QUOTA_SAMPLES_PER_SECOND") > 100 * defaults.QUOTA_SAMPLES_PER_SECOND
    assert set(BENCH_LIMITS) >= {
        name for name in dir(defaults) if name.startswith(("QUOTA_", "MAX_CONNECTIONS_"))
    }


def test_set_changes_one_parameter_of_a_copy_and_refuses_unknown_ones():
    params = with_changes(FULL, ["storm.connections=10000", "fanout.rate=2.5"])
    assert params["storm"]["connections"] == 10_000 and params["fanout"]["rate"] == 2.5
    assert params["storm"]["in_flight"] == FULL["storm"]["in_flight"]
    assert FULL["storm"]["connections"] == 5000  # the defaults are untouched
    for bad in ["storm.nope=3", "storm.connections=many", "storm", "nope.x=1"]:
        with pytest.raises(ValueError, match="--set"):
            with_changes(FULL, [bad])
