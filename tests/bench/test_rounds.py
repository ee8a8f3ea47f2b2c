"""bench/run.py's rounds: a relative target is judged on each side's median round."""

from __future__ import annotations

from bench.loadgen import WorkloadResult
from bench.run import Row, judge, mark_medians


def feeds_rows(target: str, cpu_per_1k: list[float]) -> list[Row]:
    return [
        Row(
            target,
            WorkloadResult(
                "feeds",
                expected=100,
                delivered=100,
                lost=0,
                window_s=1.0,
                server_cpu_per_1k=cpu,
            ),  # fmt: skip
            round=number,
            rounds=len(cpu_per_1k),
        )
        for number, cpu in enumerate(cpu_per_1k, start=1)
    ]


def test_the_ratio_is_of_the_medians_not_of_one_disturbed_pair():
    # Round 1 alone would be 0.20 / 0.10 = 2.0x, a miss; the medians, 0.14 / 0.10, pass.
    rows = feeds_rows("reference", [0.10, 0.08, 0.12]) + feeds_rows(
        "streamsite", [0.20, 0.13, 0.14]
    )
    mark_medians(rows)
    comparisons = judge(rows)
    assert [(c.reference, c.streamsite, c.relation, c.verdict) for c in comparisons] == [
        ("0.1000", "0.1400", "1.40x", "PASS")
    ]
    assert "medians of 3 rounds" in comparisons[0].measure
    streamsite = [row.verdict for row in rows if row.target == "streamsite"]
    assert streamsite == ["round 1/3", "round 2/3", "PASS (median of 3 rounds)"]


def test_the_medians_can_miss_and_a_round_that_lost_frames_misses_on_its_own():
    rows = feeds_rows("reference", [0.10, 0.10, 0.10]) + feeds_rows(
        "streamsite", [0.17, 0.16, 0.12]
    )
    rows[3].result.lost = 5  # streamsite's first round lost frames
    mark_medians(rows)
    comparisons = judge(rows)
    assert comparisons[0].relation == "1.60x" and comparisons[0].verdict == "MISS"
    assert rows[3].verdict.startswith("MISS")  # not the median, but an absolute miss
    assert rows[4].verdict.startswith("MISS")  # the median: over 1.5x


def test_a_single_round_is_judged_as_before():
    rows = feeds_rows("reference", [0.10]) + feeds_rows("streamsite", [0.14])
    mark_medians(rows)
    comparisons = judge(rows)
    assert comparisons[0].measure == "feeds: server CPU s / 1k frames"
    assert [row.verdict for row in rows] == ["PASS", "PASS"]  # feeds checks integrity too
