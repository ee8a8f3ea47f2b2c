"""``python -m streamsite.server --processes N``: N Daphne processes serving one port.

The real supervisor and its real children, on a free loopback port, with the
suite's database and Redis. Which child holds a connection is read from the
kernel (psutil: the child whose socket has the client's port as its peer).
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
import websockets

from tests.conftest import ROOT, free_port, server_env
from tests.e2e.clients import next_sample

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


class Supervised:
    """``python -m streamsite.server --processes N`` with its output in ``log``."""

    def __init__(self, log: Path, processes: int = 2) -> None:
        self.port = free_port()
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streamsite.server", "--processes", str(processes),
                 "-b", "127.0.0.1", "-p", str(self.port)],
                cwd=ROOT,
                env=server_env(SITE_ORIGINS=f"http://127.0.0.1:{self.port}"),
                stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        """Until the supervisor's output says ``text``."""
        deadline = time.monotonic() + timeout
        while text not in self.log.read_text(errors="replace"):
            assert self.process.poll() is None, self.log.read_text(errors="replace")
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.log.read_text()}"
            time.sleep(0.1)

    def children(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children()

    def holder_of(self, client_port: int) -> int:
        """The pid of the child that accepted the connection from ``client_port``."""
        for child in self.children():
            for conn in child.net_connections("tcp"):
                if conn.raddr and conn.raddr.port == client_port and conn.laddr.port == self.port:
                    return child.pid
        raise AssertionError(f"no child holds the connection from port {client_port}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


@pytest.fixture
def supervised(tmp_path, django_db_setup):
    server = Supervised(tmp_path / "server.log")
    server.wait_for("2 processes ready")
    yield server
    server.stop()


def viewer_url(server: Supervised, feed) -> str:
    return f"ws://127.0.0.1:{server.port}/ws/feeds/{feed.uuid}/?key={feed.share_key}"


async def open_viewers(url: str, count: int) -> list:
    sockets = []
    for _ in range(count):
        socket_ = await websockets.connect(url)
        assert json.loads(await socket_.recv())["type"] == "hello"
        sockets.append(socket_)
    return sockets


def client_port(socket_) -> int:
    return socket_.local_address[1]


def healthz(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
        return response.status


def test_both_processes_accept_connections_on_the_one_port(supervised, acme_feed):
    pids = {child.pid for child in supervised.children()}

    async def holders() -> list[int]:
        # 30 at least; more (up to 100) while one process has taken them all, as the
        # kernel may deal several in a row to an idle one.
        sockets = await open_viewers(viewer_url(supervised, acme_feed.feed), 30)
        try:
            held = [supervised.holder_of(client_port(s)) for s in sockets]
            while set(held) != pids and len(sockets) < 100:
                sockets += await open_viewers(viewer_url(supervised, acme_feed.feed), 1)
                held.append(supervised.holder_of(client_port(sockets[-1])))
            return held
        finally:
            for s in sockets:
                await s.close()

    held = asyncio.run(holders())
    assert len(pids) == 2
    assert set(held) == pids, f"connections per pid: { {p: held.count(p) for p in pids} }"


def test_a_viewer_on_one_process_gets_samples_published_through_the_other(supervised, acme_feed):
    feed = acme_feed.feed
    publish_url = f"ws://127.0.0.1:{supervised.port}/ws/feeds/{feed.uuid}/publish/"

    async def scenario():
        producer = await websockets.connect(
            publish_url, additional_headers={"Authorization": f"Bearer {acme_feed.token}"}
        )
        publishing_pid = supervised.holder_of(client_port(producer))
        # The kernel deals connections to the processes as it likes (an idle one may
        # take several in a row): open viewers until one lands on the other process.
        viewers: list = []
        others: list = []
        while not others and len(viewers) < 100:
            viewers += await open_viewers(viewer_url(supervised, feed), 1)
            if supervised.holder_of(client_port(viewers[-1])) != publishing_pid:
                others.append(viewers[-1])
        assert others, f"all {len(viewers)} viewers landed on the publisher's process"
        for value in (1, 0, 1):
            await producer.send(json.dumps({"value": value}))
        acks = [json.loads(await producer.recv())["seq"] for _ in range(3)]
        samples = [await next_sample(others[0]) for _ in range(3)]
        for s in [producer, *viewers]:
            await s.close()
        return acks, samples

    acks, samples = asyncio.run(scenario())
    assert acks == [1, 2, 3]
    assert [(s["seq"], s["value"]) for s in samples] == [(1, 1), (2, 0), (3, 1)]


def test_a_killed_process_is_restarted_and_the_port_keeps_answering(supervised, acme_feed):
    victim, survivor = supervised.children()
    left_behind = victim.children(recursive=True)  # its upload parser processes
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    # The survivor takes every connection meanwhile: the socket is the supervisor's.
    assert [healthz(supervised.port) for _ in range(5)] == [200] * 5
    supervised.wait_for(f"(pid {victim.pid}) exited with -9; restarting in 1 s")
    supervised.wait_for("ready again")
    pids = {child.pid for child in supervised.children()}
    assert survivor.pid in pids and victim.pid not in pids and len(pids) == 2
    assert left_behind and psutil.wait_procs(left_behind, timeout=10)[1] == []

    async def holders() -> set[int]:
        sockets = await open_viewers(viewer_url(supervised, acme_feed.feed), 30)
        try:
            return {supervised.holder_of(client_port(s)) for s in sockets}
        finally:
            for s in sockets:
                await s.close()

    assert asyncio.run(holders()) == pids  # the new process serves too


def test_sigterm_to_the_supervisor_stops_every_process(supervised):
    children = psutil.Process(supervised.process.pid).children(recursive=True)
    supervised.process.send_signal(signal.SIGTERM)
    assert supervised.process.wait(30) == 0
    _, alive = psutil.wait_procs(children, timeout=5)
    assert alive == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", supervised.port), timeout=2).close()


def test_children_stop_when_the_supervisor_is_killed(supervised):
    children = psutil.Process(supervised.process.pid).children(recursive=True)
    supervised.process.kill()
    supervised.process.wait(10)
    _, alive = psutil.wait_procs(children, timeout=20)
    assert alive == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--processes", "0"], "must be 'auto' or a whole number from 1 to 256, not '0'"),
        (["--processes", "two"], "must be 'auto' or a whole number from 1 to 256, not 'two'"),
        (["--processes", "257"], "from 1 to 256"),
        (["--processes", "2", "-u", "/tmp/s.sock"], "-u: --processes serves one TCP port"),
        (["--processes", "2", "--fd", "3"], "--fd: --processes serves one TCP port"),
        (["--processes", "2", "--no-such-option"], "unrecognized arguments: --no-such-option"),
    ],
    ids=["zero", "not-a-number", "too-many", "unix-socket", "fd", "unknown-option"],
)
def test_a_bad_command_line_is_refused_with_a_clear_error_and_starts_nothing(args, message):
    port = free_port()
    done = subprocess.run(
        [sys.executable, "-m", "streamsite.server", *args, "-b", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_a_port_in_use_is_refused_with_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "streamsite.server", "--processes", "2",
             "-b", "127.0.0.1", "-p", str(port)],
            cwd=ROOT, env=server_env(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Address already in use" in done.stderr
