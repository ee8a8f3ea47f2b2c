"""Streamsite behind nginx with 1 and with 2 Daphne processes: how fan-out scales.

    python bench/scaling.py [--quick] [--only fanout,flood] [--processes 1,2] [--rounds 2]

Starts the deployment's shape on this machine: a private nginx (deploy/'s
locations file, ``streamsite.nginxproc``) on a free loopback port in front of
``python -m streamsite.server --processes N`` (``bench.targets.streamsite_server_cmd``),
runs each workload of ``bench/run.py`` through nginx for every N, and alternates
the process counts round by round so that drift on a shared machine hits both.
Prints a table and writes it to ``bench/SCALING-RESULTS.md``.

Server CPU is summed over the supervisor, every Daphne process, Redis and nginx:
what a delivered frame costs the host. The load generator shares the machine's
cores, so the ceiling is the machine, not Streamsite: the table shows its CPU too.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadgen import WorkloadResult  # noqa: E402
from bench.reference import raise_nofile_limit  # noqa: E402
from bench.run import FULL, QUICK, _fmt, _summary, run_workload, write_tsv  # noqa: E402
from bench.targets import (  # noqa: E402
    LOG_DIR,
    REPO_ROOT,
    ServerProcess,
    StreamsiteTarget,
    TargetError,
    free_port,
    streamsite_server_cmd,
)
from streamsite import nginxproc  # noqa: E402

RESULTS_PATH = REPO_ROOT / "bench" / "SCALING-RESULTS.md"
# 1,000 viewers hold 2,000 connections in nginx (client and upstream side).
NGINX_WORKER_CONNECTIONS = 8192


class BehindNginx(StreamsiteTarget):
    """Streamsite served by ``--processes N`` on one port, reached through nginx."""

    def __init__(self, processes: int) -> None:
        super().__init__()
        self.processes = processes
        self.name = f"streamsite x{processes}"
        self.nginx: nginxproc.Nginx | None = None

    def setup(self) -> None:
        binary = nginxproc.nginx_binary()
        if binary is None:
            raise TargetError("nginx is not installed (apt-get install nginx)")
        self.nginx_binary = binary
        super().setup()
        # Daphne leaves static files to nginx, as deployed.
        self.env["SERVE_STATIC"] = "0"

    def start_server(self) -> None:
        backend = free_port()
        self.server = ServerProcess(
            f"streamsite-x{self.processes}",
            streamsite_server_cmd(backend, self.python, processes=self.processes),
            self.env,
            self.project,
        )
        self._wait_ready()
        # In bench/out beside the server's log, so that its error.log outlives the run.
        prefix = LOG_DIR / f"nginx-x{self.processes}"
        shutil.rmtree(prefix, ignore_errors=True)
        prefix.mkdir(parents=True)
        (prefix / "locations.conf").write_text(nginxproc.locations(Path(self.env["STATIC_ROOT"])))
        self.port = free_port()
        site = nginxproc.site([backend], self.port, prefix / "locations.conf")
        self.nginx = nginxproc.start_nginx(
            self.nginx_binary, prefix, site, self.port, NGINX_WORKER_CONNECTIONS
        )

    def _wait_ready(self, timeout: float = 120) -> None:
        """Until the supervisor says every process accepts (the port opens before)."""
        assert self.server is not None
        ready = f"{self.processes} processes ready"
        deadline = time.monotonic() + timeout
        while ready not in self.server.log_path.read_text(errors="replace"):
            if self.server.process.poll() is not None or time.monotonic() > deadline:
                raise TargetError(f"no {ready!r}; see {self.server.log_path}")
            time.sleep(0.2)

    def server_pids(self) -> list[int]:
        nginx = self.nginx.process.pid if self.nginx else None
        if nginx is None:
            return super().server_pids()
        try:
            workers = [p.pid for p in psutil.Process(nginx).children()]
        except psutil.Error:
            workers = []
        return [*super().server_pids(), nginx, *workers]

    def stop_server(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
            self.nginx = None
        super().stop_server()


COLUMNS = [
    "round",
    "workload",
    "processes",
    "conns",
    "delivered / expected",
    "lost",
    "rate frames/s",
    "srv CPU s/1k",
    "srv CPU %",
    "p50 ms",
    "p99 ms",
    "loadgen CPU %",
    "other CPU %",
    "errors",
]


def row(round_no: int, processes: int, r: WorkloadResult) -> list[str]:
    other = 100.0 * r.other_cpu_s / r.window_s if r.window_s else None
    srv = 100.0 * r.server_cpu_s / r.window_s if r.server_cpu_s and r.window_s else None
    delivered = "—" if r.delivered is None else f"{r.delivered:,} / {r.expected or 0:,}"
    return [
        str(round_no),
        r.workload,
        str(processes),
        f"{r.connected}/{r.connections}",
        delivered,
        "—" if r.lost is None else str(r.lost),
        _fmt(r.rate, "{:,.0f}"),
        _fmt(r.server_cpu_per_1k, "{:.4f}"),
        _fmt(srv, "{:.0f}"),
        _fmt(r.p50_ms, "{:.1f}"),
        _fmt(r.p99_ms, "{:.1f}"),
        f"{r.loadgen_cpu_pct:.0f}",
        _fmt(other, "{:.0f}"),
        "; ".join(r.errors)[:80] or "—",
    ]


def table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])


def scaling(results: dict[tuple[int, str, int], WorkloadResult], counts: list[int]) -> str:
    """Per round and workload: each count's rate and CPU per 1k over the first count's."""
    base = counts[0]
    lines = [
        f"| round | workload | processes | rate vs x{base} | CPU s/1k vs x{base} |",
        "| --- | --- | --- | --- | --- |",
    ]
    for (round_no, workload, processes), r in sorted(results.items()):
        b = results.get((round_no, workload, base))
        if processes == base or b is None:
            continue
        rate = r.rate / b.rate if r.rate and b.rate else None
        cpu = (
            r.server_cpu_per_1k / b.server_cpu_per_1k
            if r.server_cpu_per_1k and b.server_cpu_per_1k
            else None
        )
        lines.append(
            f"| {round_no} | {workload} | {processes} | {_fmt(rate, '{:.2f}x')} "
            f"| {_fmt(cpu, '{:.2f}x')} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="bench/run.py's quick sizes")
    parser.add_argument("--only", default="fanout,flood", help="workloads (default fanout,flood)")
    parser.add_argument("--processes", default="1,2", help="process counts (default 1,2)")
    parser.add_argument("--rounds", type=int, default=2, help="times to run each (default 2)")
    parser.add_argument("--procs", type=int, default=2, help="load generator processes")
    args = parser.parse_args()
    workloads = [w for w in args.only.split(",") if w]
    counts = [int(n) for n in args.processes.split(",") if n]
    params = QUICK if args.quick else FULL
    if unknown := [w for w in workloads if w not in params]:
        parser.error(f"unknown workloads: {', '.join(unknown)}")
    raise_nofile_limit()
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    targets = {n: BehindNginx(n) for n in counts}
    results: dict[tuple[int, str, int], WorkloadResult] = {}
    rows: list[list[str]] = []
    started = datetime.datetime.now(datetime.UTC)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        tsv = Path(tmp) / "document.tsv"
        write_tsv(tsv)
        try:
            for target in targets.values():
                target.setup()
            for round_no in range(1, args.rounds + 1):
                for workload in workloads:
                    # Alternate the order each round: 1,2 then 2,1.
                    order = counts if round_no % 2 else list(reversed(counts))
                    for n in order:
                        print(
                            f"[round {round_no}] {workload} x{n} ...", file=sys.stderr, flush=True
                        )
                        for r in run_workload(
                            targets[n], workload, params[workload], args.procs, tsv
                        ):
                            results[(round_no, r.workload, n)] = r
                            rows.append(row(round_no, n, r))
                            print("   " + _summary(r), file=sys.stderr, flush=True)
        finally:
            for target in targets.values():
                target.teardown()
    report = "\n\n".join([table(rows), scaling(results, counts)])
    print(report)
    RESULTS_PATH.write_text(
        "# Streamsite behind nginx: 1 -> 2 Daphne processes\n\n"
        f"`python bench/scaling.py {' '.join(sys.argv[1:])}` on {started:%Y-%m-%d %H:%M} UTC; "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}. "
        "nginx (one worker) in front of `python -m streamsite.server --processes N`; "
        "server CPU = supervisor + Daphne processes + Redis + nginx. The load generator "
        "runs on the same cores (its CPU % is a column): on 2 cores, 2 Daphne processes "
        "compete with it and with nginx, so this measures the machine as much as the "
        "server. What the columns mean: bench/README.md.\n\n" + report + "\n"
    )
    print(f"\nwritten to {RESULTS_PATH}", file=sys.stderr)


if __name__ == "__main__":
    main()
