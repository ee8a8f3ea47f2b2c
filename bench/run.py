"""Run every workload against the reference and Streamsite, side by side, in one invocation.

    python bench/run.py [--quick] [--only fanout,flood,...] [--targets reference,streamsite]

Prints one row per (workload, target), the Streamsite/reference comparison with a
PASS/MISS verdict per target of the performance issue, and rewrites
``bench/RESULTS.md`` with the same tables and a description of the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import itertools
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

# Run as a script (``python bench/run.py``) the repository root is not on sys.path;
# the worker processes import ``bench.loadgen`` by that name.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import loadgen  # noqa: E402
from bench.loadgen import LoadConfig, WorkloadResult  # noqa: E402
from bench.reference import raise_nofile_limit, synthetic_rows  # noqa: E402
from bench.targets import (  # noqa: E402
    REPO_ROOT,
    ReferenceTarget,
    StreamsiteTarget,
    Target,
    TargetError,
)

RESULTS_PATH = REPO_ROOT / "bench" / "RESULTS.md"

# Targets of the performance issue.
FANOUT_P99_SLACK_MS = 50.0
FLOOD_MIN_RATIO = 1.0
CPU_MAX_RATIO = 1.5
RSS_MAX_RATIO = 2.0
CONNECT_MAX_RATIO = 2.0
INGEST_MIN_RATE = 5000.0
# The ingest workload's rows: without ids, and with an id on every sample (exactly-once).
INGEST_ROWS = ("ingest", "ingest-batch", "ingest-ids", "ingest-batch-ids")
DOCUMENTS_MAX_P99_MS = 50.0

FULL: dict[str, dict[str, Any]] = {
    "fanout": {"viewers": 1000, "rate": 10, "duration": 20},
    "flood": {"viewers": 100, "duration": 15},
    "feeds": {"count": 200, "viewers_per_feed": 5, "rate": 2, "duration": 20},
    "idle": {"connections": 10_000, "hold": 10},
    "storm": {"connections": 5000, "hold": 2, "in_flight": 500},
    "ingest": {"duration": 10, "batch": 100},
    "documents": {"viewers": 100, "changes": 50, "rate": 5},
}
QUICK: dict[str, dict[str, Any]] = {
    "fanout": {"viewers": 1000, "rate": 10, "duration": 5},
    "flood": {"viewers": 100, "duration": 5},
    "feeds": {"count": 200, "viewers_per_feed": 5, "rate": 2, "duration": 5},
    "idle": {"connections": 2000, "hold": 2},
    "storm": {"connections": 2000, "hold": 1, "in_flight": 500},
    "ingest": {"duration": 3, "batch": 100},
    "documents": {"viewers": 100, "changes": 15, "rate": 5},
}
WORKLOADS = list(FULL)
TARGETS: dict[str, Callable[[], Target]] = {
    "reference": ReferenceTarget,
    "streamsite": StreamsiteTarget,
}
DOCUMENT_ROWS = 10_000
# Workloads run more than once by default, targets alternating, judged on the medians
# (mark_medians): feeds' ratio swung 1.08-1.90x between single pairs of runs of the same
# code on this machine.
ROUNDS = {"feeds": 3}


@dataclass
class Row:
    target: str
    result: WorkloadResult
    verdict: str = ""
    round: int = 1
    rounds: int = 1
    # The row its target's relative verdict is drawn from: the only round, or the one
    # with the median server CPU (mark_medians).
    median: bool = True


Workload = Callable[
    [Target, LoadConfig, dict[str, Any], Path], Coroutine[Any, Any, list[WorkloadResult]]
]


async def _fanout(t: Target, c: LoadConfig, p: dict[str, Any], tsv: Path) -> list[WorkloadResult]:
    return await loadgen.fanout(t.create_feeds(1, "bench-fanout")[0], c, **p)


async def _flood(t: Target, c: LoadConfig, p: dict[str, Any], tsv: Path) -> list[WorkloadResult]:
    return await loadgen.flood(t.create_feeds(1, "bench-flood")[0], c, **p)


async def _feeds(t: Target, c: LoadConfig, p: dict[str, Any], tsv: Path) -> list[WorkloadResult]:
    params = dict(p)
    endpoints = t.create_feeds(params.pop("count"), "bench-feeds")
    return await loadgen.feeds(endpoints, c, **params)


async def _idle(t: Target, c: LoadConfig, p: dict[str, Any], tsv: Path) -> list[WorkloadResult]:
    return await loadgen.idle(t.create_feeds(1, "bench-idle")[0], c, **p)


async def _storm(t: Target, c: LoadConfig, p: dict[str, Any], tsv: Path) -> list[WorkloadResult]:
    params = dict(p)
    burst = dataclasses.replace(c, connect_concurrency=params.pop("in_flight"))
    return await loadgen.idle(t.create_feeds(1, "bench-storm")[0], burst, name="storm", **params)


async def _ingest(t: Target, c: LoadConfig, p: dict[str, Any], tsv: Path) -> list[WorkloadResult]:
    return await loadgen.ingest(t.create_feeds(1, "bench-ingest")[0], c, **p)


async def _documents(
    t: Target, c: LoadConfig, p: dict[str, Any], tsv: Path
) -> list[WorkloadResult]:
    return await loadgen.documents(t.create_document(tsv), c, **p)


RUNNERS: dict[str, Workload] = {
    "fanout": _fanout,
    "flood": _flood,
    "feeds": _feeds,
    "idle": _idle,
    "storm": _storm,
    "ingest": _ingest,
    "documents": _documents,
}


def write_tsv(path: Path) -> None:
    """The document both targets serve: the reference's synthetic table, as TSV."""
    with path.open("w") as out:
        out.write("\t".join(["id", "name", "value", "category", "ts"]) + "\n")
        for row in synthetic_rows(DOCUMENT_ROWS):
            out.write("\t".join(row) + "\n")


def wait_until_quiet(max_wait: float, threshold_pct: float = 15.0) -> float:
    """Wait (at most ``max_wait`` s) until the machine's CPU is idle; return the busy % seen last.

    "Idle" = all processes together use under ``threshold_pct`` % of one core for a
    whole second. On a shared machine another job's CPU would be charged to neither
    side but would slow both unpredictably.
    """
    cores = psutil.cpu_count() or 1  # None when the platform cannot tell
    busy = psutil.cpu_percent(interval=1.0) * cores
    deadline = time.monotonic() + max_wait
    while busy > threshold_pct and time.monotonic() < deadline:
        busy = psutil.cpu_percent(interval=1.0) * cores
    return busy


def run_workload(
    target: Target, workload: str, params: dict[str, Any], procs: int, tsv: Path
) -> list[WorkloadResult]:
    """One workload against a freshly started server; a failure becomes an error row."""
    try:
        target.start_server()
        config = LoadConfig(procs=procs, server_pids=target.server_pids())
        return asyncio.run(RUNNERS[workload](target, config, params, tsv))
    except Exception as exc:  # one broken workload must not hide the others
        traceback.print_exc()
        return [WorkloadResult(workload, errors=[f"{type(exc).__name__}: {exc}"[:300]])]
    finally:
        target.stop_server()


def run_all(
    target_names: list[str],
    workloads: list[str],
    params: dict[str, dict[str, Any]],
    procs: int,
    quiet_wait: float,
    rounds: dict[str, int] | None = None,
) -> list[Row]:
    """Every workload against every target, ``rounds[workload]`` times (default 1).

    Targets alternate within each workload (reference, then Streamsite, then the
    next round or workload) so that a slow drift of the machine affects both
    sides alike.
    """
    rounds = rounds or {}
    rows: list[Row] = []
    ready: list[Target] = []
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        tsv = Path(tmp) / "document.tsv"
        write_tsv(tsv)
        try:
            for name in target_names:
                target = TARGETS[name]()
                try:
                    target.setup()
                    ready.append(target)
                except (TargetError, OSError, subprocess.SubprocessError) as exc:
                    print(f"[{name}] set-up failed: {exc}", file=sys.stderr)
                    target.teardown()
                    rows += [
                        Row(name, WorkloadResult(w, errors=[f"set-up failed: {exc}"[:300]]))
                        for w in workloads
                    ]
            for workload in workloads:
                count = rounds.get(workload, 1)
                for number, target in itertools.product(range(1, count + 1), ready):
                    if quiet_wait:
                        busy = wait_until_quiet(quiet_wait)
                        if busy > 15:
                            print(f"   machine still {busy:.0f}% busy", file=sys.stderr)
                    label = f" (round {number}/{count})" if count > 1 else ""
                    print(f"[{target.name}] {workload}{label} ...", file=sys.stderr, flush=True)
                    for result in run_workload(target, workload, params[workload], procs, tsv):
                        rows.append(Row(target.name, result, round=number, rounds=count))
                        print("   " + _summary(result), file=sys.stderr, flush=True)
        finally:
            for target in ready:
                target.teardown()
    return rows


def _summary(r: WorkloadResult) -> str:
    parts = [r.workload]
    if r.rate is not None:
        parts.append(f"{r.rate:,.0f} {r.rate_unit}")
    if r.p99_ms is not None:
        parts.append(f"p99 {r.p99_ms:.1f} ms")
    if r.lost:
        parts.append(f"lost {r.lost}")
    if r.errors:
        parts.append(f"errors: {'; '.join(r.errors)}")
    return ", ".join(parts)


# --------------------------------------------------------------------------- verdicts


@dataclass
class Comparison:
    measure: str
    reference: str
    streamsite: str
    relation: str
    target: str
    verdict: str


def mark_medians(rows: list[Row]) -> None:
    """Of each target's rounds of a workload, mark the one with the median server CPU
    per 1k frames (the lower middle of an even count) as the one to judge against the
    other target's median; the rest are shown, and checked only for absolute targets.

    One pair of runs on a shared machine swings by more than a 1.5x target's margin
    (docs/ARCHITECTURE.md, "Many small feeds"); the median of alternated rounds does
    not move with one disturbed run.
    """
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.target, row.result.workload), []).append(row)
    for group in groups.values():
        if len(group) < 2:
            continue
        measured = sorted(
            (row for row in group if row.result.server_cpu_per_1k is not None),
            key=lambda row: row.result.server_cpu_per_1k or 0.0,
        )
        median = measured[(len(measured) - 1) // 2] if measured else group[0]
        for row in group:
            row.median = row is median


def _find(rows: list[Row], target: str, workload: str) -> WorkloadResult | None:
    return next(
        (
            r.result
            for r in rows
            if r.median and r.target == target and r.result.workload == workload
        ),
        None,
    )


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def judge(rows: list[Row]) -> list[Comparison]:
    """Fill each row's verdict and return the Streamsite-vs-reference comparisons.

    Absolute targets (integrity, no errors, ingest rate, documents p99) are checked
    on every row; relative ones only on Streamsite rows that have a reference row.
    """
    comparisons: list[Comparison] = []
    for row in rows:
        r = row.result
        misses: list[str] = []
        checked = False
        if r.errors or r.connect_failures:
            misses.append("errors")
        if r.workload in ("fanout", "feeds"):
            checked = True
            if r.lost or r.duplicated or r.out_of_order or not r.delivered:
                misses.append("integrity")
        if r.workload in ("idle", "storm"):
            checked = True
        if r.workload in INGEST_ROWS:
            checked = True
            if (r.rate or 0) < INGEST_MIN_RATE:
                misses.append(f"< {INGEST_MIN_RATE:,.0f}/s")
        if r.workload == "documents":
            checked = True
            if r.lost or r.p99_ms is None or r.p99_ms > DOCUMENTS_MAX_P99_MS:
                misses.append(
                    f"p99 > {DOCUMENTS_MAX_P99_MS:.0f} ms" if not r.lost else "missed pages"
                )
        ref = _find(rows, "reference", r.workload)
        if row.target == "streamsite" and ref is not None and row.median:
            misses += _relative(r, ref, comparisons, rounds=row.rounds)
            checked = True
        if r.errors and not r.window_s:
            row.verdict = "ERROR: not measured"
        elif misses:
            row.verdict = "MISS: " + ", ".join(misses)
        elif not row.median:
            row.verdict = f"round {row.round}/{row.rounds}"
        elif checked:
            row.verdict = "PASS"
        else:
            row.verdict = "baseline" if row.target == "reference" else "no reference"
        if row.rounds > 1 and row.median:
            row.verdict += f" (median of {row.rounds} rounds)"
    return comparisons


def _relative(
    r: WorkloadResult, ref: WorkloadResult, out: list[Comparison], *, rounds: int = 1
) -> list[str]:
    """Check one Streamsite row against its reference row; append the comparisons made."""
    misses = []
    of_rounds = f" (medians of {rounds} rounds)" if rounds > 1 else ""

    def compare(
        measure: str,
        s: float | None,
        b: float | None,
        relation: str,
        target: str,
        ok: bool | None,
        fmt: str,
    ) -> None:
        verdict = "n/a" if ok is None else ("PASS" if ok else "MISS")
        out.append(Comparison(measure, _fmt(b, fmt), _fmt(s, fmt), relation, target, verdict))
        if ok is False:
            misses.append(measure)

    if r.workload in ("fanout", "flood", "feeds"):
        ratio = _ratio(r.server_cpu_per_1k, ref.server_cpu_per_1k)
        compare(
            f"{r.workload}: server CPU s / 1k frames{of_rounds}",
            r.server_cpu_per_1k,
            ref.server_cpu_per_1k,
            _fmt(ratio, "{:.2f}x"),
            f"<= {CPU_MAX_RATIO}x",
            None if ratio is None else ratio <= CPU_MAX_RATIO,
            "{:.4f}",
        )
    if r.workload == "fanout":
        diff = None if r.p99_ms is None or ref.p99_ms is None else r.p99_ms - ref.p99_ms
        compare(
            "fanout: p99 latency ms",
            r.p99_ms,
            ref.p99_ms,
            _fmt(diff, "{:+.1f} ms"),
            f"<= +{FANOUT_P99_SLACK_MS:.0f} ms",
            None if diff is None else diff <= FANOUT_P99_SLACK_MS,
            "{:.1f}",
        )
    if r.workload == "flood":
        ratio = _ratio(r.rate, ref.rate)
        compare(
            "flood: delivered frames/s",
            r.rate,
            ref.rate,
            _fmt(ratio, "{:.2f}x"),
            f">= {FLOOD_MIN_RATIO}x",
            None if ratio is None else ratio >= FLOOD_MIN_RATIO,
            "{:,.0f}",
        )
    if r.workload == "idle":
        ratio = _ratio(r.server_rss_per_conn, ref.server_rss_per_conn)
        compare(
            "idle: server RSS KiB / connection",
            None if r.server_rss_per_conn is None else r.server_rss_per_conn / 1024,
            None if ref.server_rss_per_conn is None else ref.server_rss_per_conn / 1024,
            _fmt(ratio, "{:.2f}x"),
            f"<= {RSS_MAX_RATIO}x",
            None if ratio is None else ratio <= RSS_MAX_RATIO,
            "{:.1f}",
        )
    if r.workload in ("idle", "storm"):
        ratio = _ratio(r.connect_wall_s, ref.connect_wall_s)
        compare(
            f"{r.workload}: connect wall time s",
            r.connect_wall_s,
            ref.connect_wall_s,
            _fmt(ratio, "{:.2f}x"),
            f"<= {CONNECT_MAX_RATIO}x",
            None if ratio is None else ratio <= CONNECT_MAX_RATIO,
            "{:.1f}",
        )
        compare(  # for docs/SCALING.md's cost model; the target is the wall time above
            f"{r.workload}: server CPU ms per handshake",
            r.server_cpu_per_1k,
            ref.server_cpu_per_1k,
            _fmt(_ratio(r.server_cpu_per_1k, ref.server_cpu_per_1k), "{:.2f}x"),
            "—",
            None,
            "{:.2f}",
        )
    if r.workload in INGEST_ROWS:
        compare(
            f"{r.workload}: samples/s acked",
            r.rate,
            ref.rate,
            _fmt(_ratio(r.rate, ref.rate), "{:.2f}x"),
            f">= {INGEST_MIN_RATE:,.0f}/s",
            None if r.rate is None else r.rate >= INGEST_MIN_RATE,
            "{:,.0f}",
        )
    if r.workload == "documents":
        compare(
            "documents: page change p99 ms",
            r.p99_ms,
            ref.p99_ms,
            _fmt(_ratio(r.p99_ms, ref.p99_ms), "{:.2f}x"),
            f"<= {DOCUMENTS_MAX_P99_MS:.0f} ms",
            None if r.p99_ms is None else r.p99_ms <= DOCUMENTS_MAX_P99_MS,
            "{:.1f}",
        )
    return misses


# --------------------------------------------------------------------------- report


def _fmt(value: float | None, fmt: str) -> str:
    return "—" if value is None else fmt.format(value)


def _int(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


COLUMNS = [
    "workload",
    "target",
    "conns",
    "delivered / expected",
    "lost",
    "dup",
    "ooo",
    "p50 ms",
    "p99 ms",
    "max ms",
    "rate",
    "srv CPU s/1k",
    "srv CPU %",
    "srv RSS KiB/conn",
    "loadgen CPU s (% wall, peak proc %)",
    "other CPU %",
    "check",
]


def row_cells(row: Row) -> list[str]:
    r = row.result
    frames = "—" if r.delivered is None else f"{r.delivered:,} / {_int(r.expected)}"
    rate = "—" if r.rate is None else f"{r.rate:,.0f} {r.rate_unit}"
    rss = None if r.server_rss_per_conn is None else r.server_rss_per_conn / 1024
    loadgen_cpu = (
        f"{r.loadgen_cpu_s:.1f} ({r.loadgen_cpu_pct:.0f}%, {r.loadgen_peak_proc_pct:.0f}%)"
        if r.window_s
        else "—"
    )
    return [
        r.workload,
        row.target + (f" {row.round}/{row.rounds}" if row.rounds > 1 else ""),
        f"{r.connected:,}/{r.connections:,}",
        frames,
        _int(r.lost),
        _int(r.duplicated),
        _int(r.out_of_order),
        _fmt(r.p50_ms, "{:.1f}"),
        _fmt(r.p99_ms, "{:.1f}"),
        _fmt(r.max_ms, "{:.1f}"),
        rate,
        _fmt(r.server_cpu_per_1k, "{:.4f}"),
        _fmt(r.server_cpu_pct, "{:.0f}"),
        _fmt(rss, "{:.1f}"),
        loadgen_cpu,
        f"{r.other_cpu_pct:.0f}" if r.window_s else "—",
        row.verdict,
    ]


def markdown_table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def machine_description() -> list[str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = "unknown"
    return [
        f"- CPUs (nproc): {len(os.sched_getaffinity(0))}",
        f"- CPU model: {model}",
        f"- RAM: {ram}",
        f"- Python: {platform.python_version()} ({sys.executable})",
        f"- Kernel: {platform.release()}",
        f"- Commit: {commit}",
    ]


def render(rows: list[Row], comparisons: list[Comparison], args: argparse.Namespace) -> str:
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    targets = sorted({row.target for row in rows})
    lines = [
        "# Benchmark results",
        "",
        f"Generated by `python bench/run.py {' '.join(args.argv)}`".rstrip() + f" on {now}.",
        "Each run replaces this file; see bench/README.md for how to read it.",
        "",
    ]
    if targets == ["reference"]:
        lines += [
            "**Reference-only run: Streamsite was not measured.** The rows below are the "
            "baseline the Streamsite targets are relative to.",
            "",
        ]
    if args.quick:
        lines += [
            "**Quick mode**: shortened durations and 2,000 idle connections; "
            "not valid for the targets.",
            "",
        ]
    lines += [
        "## Machine",
        "",
        *machine_description(),
        f"- Load generator: {args.procs} worker processes",
        "",
    ]
    lines += ["## Results", "", markdown_table(COLUMNS, [row_cells(r) for r in rows]), ""]
    if comparisons:
        header = [
            "measure",
            "reference",
            "streamsite",
            "streamsite vs reference",
            "target",
            "verdict",
        ]
        body = [
            [c.measure, c.reference, c.streamsite, c.relation, c.target, c.verdict]
            for c in comparisons
        ]
        lines += ["## Streamsite vs reference", "", markdown_table(header, body), ""]
    notes = [
        f"- {row.result.workload} / {row.target}: "
        + "; ".join(row.result.errors + row.result.notes)
        for row in rows
        if row.result.errors or row.result.notes
    ]
    if notes:
        lines += ["## Notes and errors", "", *notes, ""]
    return "\n".join(lines)


def with_changes(base: dict[str, dict[str, Any]], changes: list[str]) -> dict[str, dict[str, Any]]:
    """A copy of ``base`` with each ``WORKLOAD.PARAM=N`` of ``changes`` applied (--set)."""
    params = {workload: dict(p) for workload, p in base.items()}
    for change in changes:
        name, _, value = change.partition("=")
        workload, _, param = name.partition(".")
        if param not in params.get(workload, {}) or not value:
            raise ValueError(f"--set {change}: not WORKLOAD.PARAM=N of a known parameter")
        try:
            params[workload][param] = int(value)
        except ValueError:
            try:
                params[workload][param] = float(value)
            except ValueError:
                raise ValueError(f"--set {change}: {value!r} is not a number") from None
    return params


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description="Streamsite vs Tornado reference benchmark")
    parser.add_argument("--quick", action="store_true", help="short durations, for a smoke run")
    parser.add_argument("--only", default=",".join(WORKLOADS), help="comma-separated workloads")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated targets")
    parser.add_argument(
        "--procs", type=int, default=LoadConfig.procs, help="viewer worker processes"
    )
    parser.add_argument("--results", type=Path, default=RESULTS_PATH, help="markdown file to write")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="SECONDS",
        help="before each run, wait up to this long for the machine's CPU to go idle",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=0,
        metavar="N",
        help=f"run each workload N times, targets alternating, and judge the medians "
        f"(default: {', '.join(f'{w} {n}' for w, n in ROUNDS.items())}, others 1)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="WORKLOAD.PARAM=N",
        help="change one workload parameter, e.g. storm.connections=10000 (repeatable)",
    )
    args = parser.parse_args(argv)
    args.argv = argv
    workloads = [w.strip() for w in args.only.split(",") if w.strip()]
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = [w for w in workloads if w not in RUNNERS] + [t for t in targets if t not in TARGETS]
    if unknown:
        parser.error(f"unknown workload or target: {', '.join(unknown)}")
    raise_nofile_limit()
    try:
        params = with_changes(QUICK if args.quick else FULL, args.set)
    except ValueError as exc:
        parser.error(str(exc))
    rounds = {w: args.rounds for w in workloads} if args.rounds > 0 else ROUNDS
    rows = run_all(targets, workloads, params, args.procs, args.wait_quiet, rounds)
    # Table order: by workload, reference before Streamsite.
    order = {w: i for i, w in enumerate(WORKLOADS + list(INGEST_ROWS))}
    rows.sort(
        key=lambda row: (
            order.get(row.result.workload.split("-")[0], 99),
            row.result.workload,
            row.target,
            row.round,
        )
    )
    mark_medians(rows)
    comparisons = judge(rows)
    report = render(rows, comparisons, args)
    print(report)
    args.results.write_text(report)
    print(f"written to {args.results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
