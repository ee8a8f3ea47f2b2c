"""Smoke test of the benchmark: the load generator against the Tornado reference.

No timing assertions: this machine may be busy. What is asserted is what makes the
benchmark's numbers trustworthy: every frame is accounted for, and loss, duplication
and reordering are really detected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from bench import loadgen
from bench.loadgen import LatencyHistogram, LoadConfig, SeqTracker
from bench.targets import ReferenceTarget


@pytest.fixture
def reference() -> Iterator[ReferenceTarget]:
    target = ReferenceTarget()
    target.start_server()
    try:
        yield target
    finally:
        target.stop_server()


def test_reference_fanout_delivers_every_sample_once_in_order(reference: ReferenceTarget) -> None:
    (feed,) = reference.create_feeds(1, "smoke")
    config = LoadConfig(procs=2, server_pids=reference.server_pids(), drain_timeout=5, quiet=2)

    (result,) = asyncio.run(loadgen.fanout(feed, config, viewers=20, rate=20, duration=2))

    assert result.errors == []
    assert result.connected == 20
    assert result.expected == 20 * 40
    assert result.delivered == result.expected
    assert (result.lost, result.duplicated, result.out_of_order) == (0, 0, 0)
    assert result.p99_ms is not None
    assert result.server_cpu_s is not None


def test_seq_tracker_counts_gap_duplicate_and_late_frames() -> None:
    tracker = SeqTracker(baseline=10)  # the hello said last_seq 10

    for seq in [11, 12, 14, 15, 15, 13, 17, 9]:
        tracker.add(seq)

    # 13 arrived late (after 14): out of order, not lost. 15 twice and 9 (already
    # covered by the hello) are duplicates. 16 never came, nor did 18 (the end).
    assert tracker.expected(18) == 8
    assert tracker.received == 6
    assert tracker.out_of_order == 1
    assert tracker.duplicated == 2
    assert tracker.lost(18) == 2
    assert not tracker.complete(18)


def test_seq_tracker_in_order_stream_is_complete() -> None:
    tracker = SeqTracker(baseline=0)

    for seq in range(1, 101):
        tracker.add(seq)

    assert (tracker.lost(100), tracker.duplicated, tracker.out_of_order) == (0, 0, 0)
    assert tracker.complete(100)


def test_latency_histogram_percentiles_merge_across_workers() -> None:
    first, second = LatencyHistogram(), LatencyHistogram()
    for ms in range(1, 51):
        first.add(float(ms))
    for ms in range(51, 101):
        second.add(float(ms))

    first.merge(second)

    assert first.total == 100
    assert first.percentile(50) == pytest.approx(50.1)
    assert first.percentile(99) == pytest.approx(99.1)
    assert first.max_ms == 100.0
