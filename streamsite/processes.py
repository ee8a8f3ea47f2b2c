"""``python -m streamsite.server --processes N``: N Daphne processes on one port.

A supervisor, not a server: it binds the listening socket once, starts N
children (``python -m streamsite.server`` with the other arguments as given)
that each adopt it (Daphne's ``--fd``: Twisted's ``AdoptedStreamServerEndpoint``),
restarts a child that exits with backoff, and on SIGTERM or SIGINT stops them
all. It imports neither Django nor Twisted, holds no connection and never
accepts one: the kernel hands each new connection to whichever child calls
``accept`` first, so a busy child takes fewer. Why one shared socket rather
than a port per process or ``SO_REUSEPORT``: docs/ARCHITECTURE.md, "Processes
per host".
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

# Handshake bursts (every viewer reconnecting after a deploy) queue here, in the
# kernel, until a child accepts them; Twisted's own default is 50. The kernel caps
# it at net.core.somaxconn (4096 by default).
LISTEN_BACKLOG = 2048
MAX_PROCESSES = 256
# A child that exits is started again after 1, 2, 4 ... 30 s; one that served for
# a minute first counts as healthy again (starts at 1 s).
MAX_BACKOFF_SECONDS = 30.0
HEALTHY_AFTER_SECONDS = 60.0
# SIGTERM, then SIGKILL for what is left: Daphne gives applications 10 s to finish
# (--application-close-timeout); systemd's TimeoutStopSec is 20 s (deploy/).
STOP_GRACE_SECONDS = 15.0
# A child writes its pid to this inherited pipe once its reactor runs (it listens).
READY_FD_VARIABLE = "STREAMSITE_SUPERVISOR_READY_FD"
# The options that choose where Daphne listens: the supervisor's to decide.
_ENDPOINT_OPTIONS = ("-u", "--unix-socket", "--fd", "-e", "--endpoint")


def requested(args: list[str]) -> bool:
    return any(a == "--processes" or a.startswith("--processes=") for a in args)


def process_count(text: str) -> int:
    """``auto`` (the cores this process may run on) or a whole number 1..MAX_PROCESSES."""
    if text == "auto":
        # The CPUs this process may use (a container's or systemd's CPUAffinity=),
        # which os.cpu_count() ignores.
        return (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1
        )
    try:
        count = int(text)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_PROCESSES:
        raise argparse.ArgumentTypeError(
            f"must be 'auto' or a whole number from 1 to {MAX_PROCESSES}, not {text!r}"
        )
    return count


@dataclass
class Plan:
    """What the supervisor runs: N children on (host, port), each with ``daphne_args``."""

    processes: int
    host: str
    port: int
    daphne_args: list[str]


def plan(args: list[str], check_daphne_args: Callable[[list[str]], None]) -> Plan:
    """The plan from the command line; exits 2 with a message (argparse's) on bad input.

    ``check_daphne_args`` parses the children's arguments as Daphne will, so that a
    mistyped option stops here rather than in N children restarted for ever.
    """
    parser = argparse.ArgumentParser(
        prog="python -m streamsite.server",
        allow_abbrev=False,
        add_help=False,
        description="Serve one port from N Daphne processes (the rest: Daphne's options).",
    )
    parser.add_argument("--processes", type=process_count, required=True)
    parser.add_argument("-b", "--bind", dest="host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=8000)
    known, rest = parser.parse_known_args(args)
    for option in rest:
        if option.split("=", 1)[0] in _ENDPOINT_OPTIONS:
            parser.error(
                f"{option.split('=', 1)[0]}: --processes serves one TCP port; use -b and -p"
            )
    if not 0 <= known.port <= 65535:
        parser.error(f"-p: not a port: {known.port}")
    check_daphne_args(rest)
    return Plan(known.processes, known.host, known.port, rest)


def listening_socket(host: str, port: int) -> socket.socket:
    """The socket every child accepts from: bound and listening before any starts."""
    # IPv4 only: Daphne's fd endpoint (its --fd, a Twisted plugin it ships) adopts
    # every descriptor as AF_INET. nginx reaches the processes on 127.0.0.1.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Twisted does
    sock.bind((host, port))
    sock.listen(LISTEN_BACKLOG)
    sock.set_inheritable(True)
    return sock


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the supervisor dies (even by SIGKILL),
    so that no orphan keeps serving an old release."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


@dataclass
class Child:
    index: int
    process: subprocess.Popen | None = None
    restarts: int = 0
    started_at: float = 0.0
    next_start_at: float = 0.0
    ready: bool = False


class Supervisor:
    """Keeps ``processes`` children serving ``sock``; see the module docstring."""

    def __init__(self, plan: Plan, sock: socket.socket, command: list[str]) -> None:
        self.plan = plan
        self.sock = sock
        self.command = [*command, *plan.daphne_args, "--fd", str(sock.fileno())]
        self.children = [Child(index) for index in range(1, plan.processes + 1)]
        self.stopping = False
        self.announced = False
        self._ready_read, self._ready_write = os.pipe()
        os.set_inheritable(self._ready_write, True)
        self.where = f"{plan.host}:{sock.getsockname()[1]}"

    def say(self, text: str) -> None:
        print(f"streamsite.server: {text}", file=sys.stderr, flush=True)

    def start(self, child: Child) -> None:
        env = {**os.environ, READY_FD_VARIABLE: str(self._ready_write)}
        child.process = subprocess.Popen(
            self.command,
            env=env,
            pass_fds=(self.sock.fileno(), self._ready_write),
            preexec_fn=_die_with_parent,  # noqa: PLW1509 (the supervisor runs no threads)
            # A group of its own: what it started (the upload parsers) goes with it.
            process_group=0,
        )
        child.started_at, child.ready = time.monotonic(), False

    def reap(self) -> None:
        """Children that exited: started again after their backoff."""
        now = time.monotonic()
        for child in self.children:
            process = child.process
            if process is not None and process.poll() is not None:
                _kill_group(process)
                if now - child.started_at > HEALTHY_AFTER_SECONDS:
                    child.restarts = 0
                delay = min(MAX_BACKOFF_SECONDS, 2.0**child.restarts)
                child.restarts += 1
                child.process, child.next_start_at = None, now + delay
                self.say(
                    f"process {child.index} (pid {process.pid}) exited with "
                    f"{process.returncode}; restarting in {delay:.0f} s"
                )
            if child.process is None and now >= child.next_start_at:
                self.start(child)

    def read_ready(self, timeout: float) -> None:
        readable, _, _ = select.select([self._ready_read], [], [], timeout)
        if not readable:
            return
        for line in os.read(self._ready_read, 4096).decode().split():
            pid = int(line)
            for child in self.children:
                if child.process is not None and child.process.pid == pid:
                    child.ready = True
                    if self.announced:
                        self.say(f"process {child.index} (pid {pid}) ready again")
        if not self.announced and all(c.ready for c in self.children):
            self.announced = True
            pids = ", ".join(str(c.process.pid) for c in self.children if c.process)
            self.say(f"{len(self.children)} processes ready on {self.where} (pids {pids})")

    def stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        self.say(f"starting {len(self.children)} processes on {self.where}")
        for child in self.children:
            self.start(child)
        while not self.stopping:
            self.reap()
            with contextlib.suppress(InterruptedError):
                self.read_ready(0.2)
        self.stop_all()
        return 0

    def stop_all(self) -> None:
        """SIGTERM to every child (a graceful Daphne stop); SIGKILL after the grace."""
        live = [c.process for c in self.children if c.process and c.process.poll() is None]
        self.say(f"stopping {len(live)} processes")
        for process in live:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for process in live:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(
                    f"pid {process.pid} still running after {STOP_GRACE_SECONDS:.0f} s: killed"
                )
                process.kill()
                process.wait()
            _kill_group(process)
        self.sock.close()


def _kill_group(process: subprocess.Popen) -> None:
    """What an exited child left behind: a child killed with SIGKILL cannot stop its
    upload parser processes (documents/parsing.py), which would run on as orphans."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def report_ready() -> None:
    """In a child: tell the supervisor this process serves (its reactor runs)."""
    fd = os.environ.pop(READY_FD_VARIABLE, None)
    if fd is None:
        return
    with contextlib.suppress(OSError, ValueError):
        os.write(int(fd), f"{os.getpid()}\n".encode())
        os.close(int(fd))


def main(
    args: list[str], command: list[str], check_daphne_args: Callable[[list[str]], None]
) -> int:
    """Supervise N children of ``command``; the exit status (2 for a bad command line)."""
    wanted = plan(args, check_daphne_args)
    try:
        sock = listening_socket(wanted.host, wanted.port)
    except (OSError, OverflowError) as exc:
        print(
            f"streamsite.server: cannot listen on {wanted.host}:{wanted.port} "
            f"(an IPv4 address and a free port): {getattr(exc, 'strerror', None) or exc}",
            file=sys.stderr,
        )
        return 1
    return Supervisor(wanted, sock, command).run()
