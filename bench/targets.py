"""The servers under test: how to start one, find its PIDs, and create feeds and documents.

A target is set up once (``setup``), then for each workload started fresh
(``start_server``), given objects (``create_feeds``, ``create_document``), measured,
and stopped (``stop_server``); ``teardown`` removes what ``setup`` made. A fresh
server per workload keeps one workload's memory and buffers out of the next one's
numbers.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import string
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import IO, Protocol
from urllib.parse import urlsplit

import psutil

from bench.loadgen import DocumentEndpoint, FeedEndpoint

REPO_ROOT = Path(__file__).resolve().parent.parent
LOG_DIR = REPO_ROOT / "bench" / "out"
HOST = "127.0.0.1"


class TargetError(RuntimeError):
    """A target could not be set up or started; the message says what to look at."""


class Target(Protocol):
    name: str

    def setup(self) -> None: ...
    def start_server(self) -> None: ...
    def server_pids(self) -> list[int]: ...
    def create_feeds(self, count: int, name: str) -> list[FeedEndpoint]: ...
    def create_document(self, tsv: Path) -> DocumentEndpoint: ...
    def stop_server(self) -> None: ...
    def teardown(self) -> None: ...


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def port_open(port: int, host: str = HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class ServerProcess:
    """A server subprocess with its output in ``bench/out/<name>.log``."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], cwd: Path) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{name}.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        self.process = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_listening(self, port: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise TargetError(
                    f"server exited with {self.process.returncode}; see {self.log_path}"
                )
            if port_open(port):
                return
            time.sleep(0.1)
        raise TargetError(
            f"server not listening on {port} after {timeout:.0f} s; see {self.log_path}"
        )

    def pids(self) -> list[int]:
        """The server process and all its descendants, now."""
        try:
            root = psutil.Process(self.process.pid)
            return [root.pid, *(child.pid for child in root.children(recursive=True))]
        except psutil.Error:
            return []

    def stop(self) -> None:
        """SIGTERM the server and its descendants; SIGKILL what is left after 10 s."""
        processes = []
        try:
            root = psutil.Process(self.process.pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.Error:
            pass
        for process in processes:
            try:
                process.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(processes, timeout=10)
        for process in alive:
            try:
                process.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=5)
        self.process.wait(timeout=5)
        self._log.close()


class ReferenceTarget:
    """The Tornado reference (``bench/reference.py``): random UUIDs, dummy key and token."""

    name = "reference"

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python
        self.port = 0
        self.server: ServerProcess | None = None

    def setup(self) -> None:
        pass

    def start_server(self) -> None:
        self.port = free_port()
        cmd = [self.python, str(REPO_ROOT / "bench" / "reference.py"), "--port", str(self.port)]
        self.server = ServerProcess(self.name, cmd, dict(os.environ), REPO_ROOT)
        self.server.wait_listening(self.port)

    def server_pids(self) -> list[int]:
        return self.server.pids() if self.server else []

    def create_feeds(self, count: int, name: str) -> list[FeedEndpoint]:
        return [
            FeedEndpoint.build(HOST, self.port, str(uuid.uuid4()), "ref", "ref")
            for _ in range(count)
        ]

    def create_document(self, tsv: Path) -> DocumentEndpoint:
        # The reference serves its own synthetic table (the same rows as ``tsv``).
        return DocumentEndpoint.build(HOST, self.port, str(uuid.uuid4()), "ref")

    def stop_server(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def teardown(self) -> None:
        self.stop_server()


def streamsite_server_cmd(
    port: int, python: str = sys.executable, processes: int | None = None
) -> list[str]:
    """The one place that says how Streamsite is served for the benchmark.

    The production launcher (``streamsite.server``: Daphne with Streamsite's
    limits), one process, with a listen backlog large enough for handshake bursts;
    with ``processes``, that many under its supervisor on the one port, as deployed
    (``--processes``: the supervisor's socket has the same backlog).
    """
    if processes is not None:
        return [python, "-m", "streamsite.server", "-b", HOST, "-p", str(port),
                "--processes", str(processes)]  # fmt: skip
    endpoint = f"tcp:port={port}:interface={HOST}:backlog=2048"
    return [python, "-m", "streamsite.server", "-e", endpoint]


# The workloads are one tenant's worth of load far past its production quotas,
# from one address: 10,000 idle viewers on one share key, 200+ feeds, ~20,000
# samples a second on one feed. The limits are raised so that the benchmark
# measures throughput, not the caps (tests/bench checks they stay raised).
BENCH_LIMITS = {
    "MAX_CONNECTIONS_PER_ADDRESS": "1000000",
    "MAX_CONNECTIONS_PER_SHARE_KEY": "1000000",
    "MAX_CONNECTIONS_PER_USER": "1000000",
    "QUOTA_MAX_FEEDS": "1000000",
    "QUOTA_MAX_DOCUMENTS": "1000000",
    "QUOTA_MAX_STORED_BYTES": str(2**62),
    "QUOTA_SAMPLES_PER_SECOND": "100000000",
    "QUOTA_CONCURRENT_UPLOADS": "1000",
    "QUOTA_CONCURRENT_EXPORTS": "1000",
}


class StreamsiteTarget:
    """Streamsite run from this checkout through ``manage.py`` with a throwaway database.

    Environment: ``REDIS_URL`` and ``DATABASE_URL`` are taken from the caller's
    environment when set; otherwise Redis at ``redis://127.0.0.1:6379/15`` (or, if
    nothing listens there, a private ``redis-server`` on a free port) and SQLite in a
    temporary directory.
    """

    name = "streamsite"
    tenant = "bench"

    def __init__(self, python: str = sys.executable, project: Path = REPO_ROOT) -> None:
        self.python = python
        self.project = project  # the directory holding manage.py
        self.port = 0
        self.server: ServerProcess | None = None
        self.redis: ServerProcess | None = None
        self.tmpdir = Path(tempfile.mkdtemp(prefix="streamsite-bench-"))
        self.env: dict[str, str] = {}

    def setup(self) -> None:
        if not (self.project / "manage.py").exists():
            raise TargetError(f"no manage.py in {self.project}: Streamsite is not in this checkout")
        alphabet = string.ascii_letters + string.digits + "!@#%^&*(-_=+)"
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE="streamsite.settings",
            DEBUG="0",
            SECRET_KEY="".join(secrets.choice(alphabet) for _ in range(50)),
            ALLOWED_HOSTS="127.0.0.1,localhost",
            REDIS_URL=os.environ.get("REDIS_URL") or self._default_redis(),
            DATABASE_URL=os.environ.get("DATABASE_URL")
            or f"sqlite:///{self.tmpdir / 'bench.sqlite3'}",
            DJANGO_SUPERUSER_PASSWORD=secrets.token_urlsafe(16),
            STATIC_ROOT=str(self.tmpdir / "static"),
        )
        env.update(BENCH_LIMITS)
        self.env = env
        self._manage("migrate", "--noinput")
        self._manage("collectstatic", "--noinput")  # as the deployment recipe does
        tenant = self._manage("createtenant", self.tenant, "--owner", "bench", check=False)
        if tenant.returncode != 0 and "exist" not in (tenant.stdout + tenant.stderr).lower():
            raise TargetError(f"createtenant failed:\n{tenant.stdout}{tenant.stderr}")

    def _default_redis(self) -> str:
        """A private redis-server, so that the Redis CPU counted is Streamsite's alone."""
        from streamsite.redisproc import redis_server_binary

        port = free_port()
        cmd = [redis_server_binary(), "--port", str(port), "--bind", HOST, "--save", "",
               "--appendonly", "no", "--maxclients", "20000"]  # fmt: skip
        self.redis = ServerProcess("redis", cmd, dict(os.environ), self.tmpdir)
        self.redis.wait_listening(port)
        return f"redis://{HOST}:{port}/0"

    def _manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [self.python, "manage.py", *args],
            cwd=self.project,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check and done.returncode != 0:
            raise TargetError(f"manage.py {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done

    def _json_lines(self, output: str) -> list[dict[str, str]]:
        return [json.loads(line) for line in output.splitlines() if line.strip().startswith("{")]

    def start_server(self) -> None:
        self.port = free_port()
        self.server = ServerProcess(
            self.name, streamsite_server_cmd(self.port, self.python), self.env, self.project
        )
        self.server.wait_listening(self.port)

    def server_pids(self) -> list[int]:
        """Daphne and its children, plus the Redis server that carries the fan-out.

        Redis is part of what one broadcast costs Streamsite (the reference has no
        such hop), so it is counted when it runs on this machine and its PID can be
        found. A shared Redis also brings other clients' load into the count.
        """
        pids = self.server.pids() if self.server else []
        redis = self._redis_pid()
        return [*pids, redis] if redis is not None else pids

    def _redis_pid(self) -> int | None:
        url = urlsplit(self.env.get("REDIS_URL", ""))
        if url.hostname not in ("127.0.0.1", "localhost", "::1"):
            return None
        port = url.port or 6379
        try:
            for conn in psutil.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                    return conn.pid
        except psutil.Error:
            pass  # not allowed to see other users' sockets: Redis is left out
        return None

    def create_feeds(self, count: int, name: str) -> list[FeedEndpoint]:
        args = ["createfeed", "--tenant", self.tenant, "--name", name, "--share"]
        args += ["--producer", "external", "--json"]
        if count > 1:
            args += ["--count", str(count)]
        objects = self._json_lines(self._manage(*args).stdout)
        if len(objects) != count:
            raise TargetError(f"createfeed printed {len(objects)} objects, expected {count}")
        return [
            FeedEndpoint.build(HOST, self.port, o["uuid"], o["key"], o["token"]) for o in objects
        ]

    def create_document(self, tsv: Path) -> DocumentEndpoint:
        done = self._manage(
            "importtsv", str(tsv), "--tenant", self.tenant, "--share", "steer", "--json"
        )
        (document,) = self._json_lines(done.stdout)
        return DocumentEndpoint.build(HOST, self.port, document["uuid"], document["key"])

    def stop_server(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def teardown(self) -> None:
        self.stop_server()
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        shutil.rmtree(self.tmpdir, ignore_errors=True)
