"""The benchmark's Streamsite server runs with its caps and quotas out of the way.

The workloads are far past one tenant's production quotas from one address
(10,000 viewers of one share key, 200 feeds, ~20,000 samples a second): with
the defaults they would measure refusals, not throughput.
"""

from __future__ import annotations

from bench.run import FULL
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
