"""Machinery of the isolation matrix: clients bound to a source address, the
neighbour's probe, and the server's memory as psutil sees it.

The attacker connects from ATTACKER_ADDRESS, the probe from PROBE_ADDRESS:
per-address caps must stop the one and never the other (the loopback range is
127.0.0.0/8, so both reach the server on 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import math
import random
import select
import socket
import statistics
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode

import psutil
import websockets

from tests.conftest import PASSWORD, Daphne

ATTACKER_ADDRESS = "127.0.0.1"
PROBE_ADDRESS = "127.0.0.2"
MB = 1024 * 1024

# The probe's bounds: generous, for a busy shared 2-core machine.
HANDSHAKE_P95_SECONDS = 2.0
PAGE_P95_SECONDS = 3.0
# A sign-in hashes a password (PBKDF2, a second of CPU on this machine when it is busy).
SIGN_IN_P95_SECONDS = 4.0


def p95(values: list[float]) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def summary(values: list[float]) -> str:
    if not values:
        return "none"
    return (
        f"p50 {statistics.median(values):.3f} p95 {p95(values):.3f} "
        f"max {max(values):.3f} s (n={len(values)})"
    )


# -- HTTP ------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    seconds: float

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def __str__(self) -> str:
        return f"{self.status} {self.body[:200]!r}"


def http_request(
    server: Daphne,
    method: str,
    path: str,
    *,
    source: str = ATTACKER_ADDRESS,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> Answer:
    """One request on a fresh connection from ``source``; the whole answer is read."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", server.port, timeout=timeout, source_address=(source, 0)
    )
    started = time.monotonic()
    try:
        try:
            connection.request(method, path, body=body, headers=headers or {})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered (and closed) before taking the whole body: read it
        response = connection.getresponse()
        data = response.read()
        return Answer(response.status, response.getheaders(), data, time.monotonic() - started)
    finally:
        connection.close()


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    for name, (filename, data) in files.items():
        parts.append(
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{filename}"\r\nContent-Type: text/tab-separated-values\r\n\r\n'
            ).encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class Browser:
    """Cookies and the CSRF token as a browser keeps them, from one source address."""

    def __init__(self, server: Daphne, *, source: str) -> None:
        self.server = server
        self.source = source
        self.cookies: dict[str, str] = {}

    def request(
        self,
        method: str,
        path: str,
        *,
        form: dict[str, str] | None = None,
        files: dict[str, tuple[str, bytes]] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> Answer:
        headers = dict(headers or {})
        body = None
        if files is not None:
            body, headers["Content-Type"] = multipart(form or {}, files)
        elif form is not None:
            body = urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if method != "GET" and "csrftoken" in self.cookies:
            headers["X-CSRFToken"] = self.cookies["csrftoken"]
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        answer = http_request(
            self.server,
            method,
            path,
            source=self.source,
            body=body,
            headers=headers,
            timeout=timeout,
        )
        for name, value in answer.headers:
            if name.lower() == "set-cookie":
                for morsel in SimpleCookie(value).values():
                    self.cookies[morsel.key] = morsel.value
        return answer

    def csrf(self, path: str = "/accounts/login/") -> str:
        if "csrftoken" not in self.cookies:
            self.request("GET", path)
        return self.cookies["csrftoken"]

    def sign_in(
        self, username: str, password: str = PASSWORD, *, path: str = "/accounts/login/"
    ) -> Answer:
        """POST the sign-in form; 302 means signed in, 200 the form again, 429 locked out."""
        token = self.csrf(path)
        form = {"csrfmiddlewaretoken": token, "username": username, "password": password}
        if path.startswith("/admin/"):
            form["next"] = "/admin/"
        return self.request("POST", path, form=form)


# -- WebSockets ------------------------------------------------------------------


async def ws_connect(url: str, *, source: str, headers: dict[str, str] | None = None):
    """A client WebSocket from ``source`` (its local address is bound before connecting)."""
    return await websockets.connect(
        url,
        local_addr=(source, 0),
        additional_headers=headers,
        open_timeout=10,
        max_size=64 * MB,
        ping_interval=None,
    )


async def first_frame(socket, within: float = 10.0) -> dict:
    """The first frame other than presence."""
    async with asyncio.timeout(within):
        while True:
            frame = json.loads(await socket.recv())
            if frame.get("type") != "presence":
                return frame


# -- the server's memory ---------------------------------------------------------


class RssSampler:
    """The server process's resident memory, sampled every 20 ms on a thread."""

    def __init__(self, server: Daphne) -> None:
        assert server.process is not None
        self.process = psutil.Process(server.process.pid)
        self.before = self._rss()
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        return self.process.memory_info().rss

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self._rss())

    def __enter__(self) -> RssSampler:
        self.before = self.peak = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.before) / MB

    def __str__(self) -> str:
        return (
            f"server RSS {self.before / MB:.0f} MB -> peak {self.peak / MB:.0f} MB "
            f"(+{self.growth_mb:.0f} MB)"
        )


# -- the neighbour's probe -------------------------------------------------------


@dataclass
class Neighbour:
    """What the probe uses: its own tenant's feed (token and key), document and account."""

    feed_uuid: str
    feed_key: str
    token: str
    document_uuid: str
    document_key: str
    username: str


@dataclass
class ProbeReport:
    sent: int = 0
    acks: list[int] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    publisher_closed: str | None = None
    handshakes: list[float] = field(default_factory=list)
    handshake_failures: list[str] = field(default_factory=list)
    pages: list[float] = field(default_factory=list)
    page_failures: list[str] = field(default_factory=list)
    sign_ins: list[float] = field(default_factory=list)
    sign_in_failures: list[str] = field(default_factory=list)
    sign_in_baseline: float = 0.0  # median sign-in before the attack: what a hash costs now
    stored_seqs: list[int] = field(default_factory=list)

    @property
    def sign_in_bound(self) -> float:
        """SIGN_IN_P95_SECONDS, or three times what a sign-in took just before the
        attack on a machine busy enough that a password hash alone takes longer."""
        return max(SIGN_IN_P95_SECONDS, 3 * self.sign_in_baseline)

    def problems(self) -> list[str]:
        found = []
        unacked = self.sent - len(self.acks)
        if unacked or self.errors:
            found.append(
                f"probe: {unacked}/{self.sent} publishes not acknowledged (errors {self.errors})"
            )
        if self.publisher_closed:
            found.append(f"probe: publish socket {self.publisher_closed}")
        if self.sent < 10:
            found.append(f"probe: only {self.sent} publishes went out")
        expected = list(range(1, len(self.stored_seqs) + 1))
        if self.stored_seqs != expected or len(self.stored_seqs) != len(self.acks):
            found.append(
                f"probe: the feed holds {len(self.stored_seqs)} samples, seqs "
                f"{self.stored_seqs[:3]}...{self.stored_seqs[-3:]} for {len(self.acks)} acks "
                "(expected 1..n, one per ack)"
            )
        for name, times, failures, bound in (
            ("viewer handshake", self.handshakes, self.handshake_failures, HANDSHAKE_P95_SECONDS),
            ("page load", self.pages, self.page_failures, PAGE_P95_SECONDS),
            ("sign-in", self.sign_ins, self.sign_in_failures, self.sign_in_bound),
        ):
            if failures:
                found.append(f"probe: {len(failures)} {name}s failed: {failures[:3]}")
            if times and p95(times) > bound:
                found.append(
                    f"probe: {name} p95 {p95(times):.2f} s > {bound:.1f} s ({summary(times)})"
                )
        # A stalled server shows as failures (each handshake and page has a timeout).
        if not self.handshakes:
            found.append("probe: no viewer handshake completed")
        if not self.pages:
            found.append("probe: no page load completed")
        return found

    def __str__(self) -> str:
        text = (
            f"probe: {len(self.acks)}/{self.sent} publishes acked, errors {self.errors or 'none'}; "
            f"handshakes {summary(self.handshakes)}; pages {summary(self.pages)}"
        )
        if self.sign_ins or self.sign_in_failures:
            text += (
                f"; sign-ins {summary(self.sign_ins)} (before the attack "
                f"{self.sign_in_baseline:.3f} s, bound {self.sign_in_bound:.1f} s)"
            )
        return text


class Probe:
    """The neighbour tenant going about its business while the attack runs.

    From PROBE_ADDRESS: publishes a sample every 20 ms on its own feed (answers
    are collected as they come, acks counted), opens a viewer handshake every
    200 ms (time to the ``hello`` frame), loads its feed and document pages
    every 300 ms, and with ``sign_in`` signs in to its account every 2 s.
    """

    def __init__(self, server: Daphne, neighbour: Neighbour, *, sign_in: bool = False) -> None:
        self.server = server
        self.neighbour = neighbour
        self.sign_in = sign_in
        self.report = ProbeReport()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def measure_sign_in(self) -> None:
        """Sign in twice, alone, and keep the median as the baseline."""
        times = []
        for _ in range(2):
            browser = Browser(self.server, source=PROBE_ADDRESS)
            await asyncio.to_thread(browser.csrf)
            answer = await asyncio.to_thread(browser.sign_in, self.neighbour.username)
            if answer.status == 302:
                times.append(answer.seconds)
        self.report.sign_in_baseline = statistics.median(times) if times else 0.0

    def start(self) -> Probe:
        self._tasks = [
            asyncio.create_task(self._publish()),
            asyncio.create_task(self._handshakes()),
            asyncio.create_task(self._pages()),
        ]
        if self.sign_in:
            self._tasks.append(asyncio.create_task(self._sign_ins()))
        return self

    async def stop(self) -> ProbeReport:
        self._stopping.set()
        await asyncio.gather(*self._tasks)
        return self.report

    async def _every(self, seconds: float) -> bool:
        """Sleep ``seconds``; False once the probe is stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return not self._stopping.is_set()

    @staticmethod
    async def _timed(work: Callable[[], Awaitable[None]], within: float) -> float:
        started = time.monotonic()
        async with asyncio.timeout(within):
            await work()
        return time.monotonic() - started

    async def _publish(self) -> None:
        n = self.neighbour
        url = f"{self.server.ws}/ws/feeds/{n.feed_uuid}/publish/"
        report = self.report
        try:
            socket = await ws_connect(
                url, source=PROBE_ADDRESS, headers={"Authorization": f"Bearer {n.token}"}
            )
        except Exception as exc:
            report.publisher_closed = f"could not open: {exc!r}"
            return
        answered = asyncio.Event()

        async def read() -> None:
            try:
                async for message in socket:
                    frame = json.loads(message)
                    if frame.get("type") == "ack":
                        report.acks.append(frame["seq"])
                    elif frame.get("type") == "error":
                        code = frame.get("error", "?")
                        report.errors[code] = report.errors.get(code, 0) + 1
                    if len(report.acks) + sum(report.errors.values()) >= report.sent:
                        answered.set()
            except websockets.ConnectionClosed:
                pass
            if not self._stopping.is_set():  # the server closed it
                report.publisher_closed = f"closed {socket.close_code} {socket.close_reason!r}"
            answered.set()

        reader = asyncio.create_task(read())
        rng = random.Random(7)
        try:
            while await self._every(0.02):
                try:
                    await socket.send(json.dumps({"value": round(rng.uniform(0, 100), 3)}))
                except websockets.ConnectionClosed:
                    break
                report.sent += 1
            # Every frame sent gets its answer (ack or error) within 15 s.
            answered.clear()
            if len(report.acks) + sum(report.errors.values()) < report.sent:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(answered.wait(), 15)
        finally:
            await socket.close()
            await reader

    async def _handshakes(self) -> None:
        n = self.neighbour
        url = f"{self.server.ws}/ws/feeds/{n.feed_uuid}/?key={n.feed_key}"

        async def handshake() -> None:
            socket = await ws_connect(url, source=PROBE_ADDRESS)
            try:
                frame = await first_frame(socket)
                if frame.get("type") != "hello":
                    raise AssertionError(f"first frame {frame}")
            finally:
                await socket.close()

        while await self._every(0.2):
            try:
                self.report.handshakes.append(await self._timed(handshake, 10))
            except Exception as exc:
                self.report.handshake_failures.append(repr(exc)[:200])

    async def _pages(self) -> None:
        n = self.neighbour
        paths = [
            f"/feeds/{n.feed_uuid}/?key={n.feed_key}",
            f"/documents/{n.document_uuid}/?key={n.document_key}",
        ]
        turn = 0
        while await self._every(0.3):
            path = paths[turn % len(paths)]
            turn += 1
            try:
                answer = await asyncio.to_thread(
                    http_request, self.server, "GET", path, source=PROBE_ADDRESS, timeout=15
                )
            except Exception as exc:
                self.report.page_failures.append(f"{path}: {exc!r}"[:200])
                continue
            if answer.status != 200:
                self.report.page_failures.append(f"{path}: {answer.status}")
            else:
                self.report.pages.append(answer.seconds)

    async def _sign_ins(self) -> None:
        while await self._every(2.0):
            browser = Browser(self.server, source=PROBE_ADDRESS)
            try:
                await asyncio.to_thread(browser.csrf)
                answer = await asyncio.to_thread(browser.sign_in, self.neighbour.username)
            except Exception as exc:
                self.report.sign_in_failures.append(repr(exc)[:200])
                continue
            if answer.status != 302:
                self.report.sign_in_failures.append(f"answered {answer.status}")
            else:
                self.report.sign_ins.append(answer.seconds)


@dataclass
class Outcome:
    """What one attack run measured: the attack's own result, the probe, the server's memory."""

    result: Any
    probe: ProbeReport
    rss: RssSampler
    seconds: float

    def __str__(self) -> str:
        return f"{self.probe}; {self.rss}; attack took {self.seconds:.1f} s"


async def under_probe(
    server: Daphne,
    neighbour: Neighbour,
    attack: Callable[[], Awaitable[Any]],
    *,
    sign_in: bool = False,
    warmup: float = 0.6,
    cooldown: float = 0.6,
) -> Outcome:
    """Run ``attack`` while the neighbour's probe runs and the server's RSS is sampled."""
    # asyncio.to_thread's default pool has cpu + 4 threads: an attack that holds
    # six would starve the probe's page loads on the client side.
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=64))
    probe = Probe(server, neighbour, sign_in=sign_in)
    if sign_in:
        await probe.measure_sign_in()
    with RssSampler(server) as rss:
        probe.start()
        await asyncio.sleep(warmup)
        started = time.monotonic()
        try:
            result = await attack()
        finally:
            seconds = time.monotonic() - started
            await asyncio.sleep(cooldown)
            report = await probe.stop()
    return Outcome(result, report, rss, seconds)


# -- a body that is never sent whole ---------------------------------------------


@dataclass
class HugeBodyAnswer:
    status: int | None
    body: bytes
    sent: int  # body bytes written before the answer came (or the connection ended)
    seconds: float
    ended: str  # how it ended: "answered", "reset", "closed"

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def __str__(self) -> str:
        return (
            f"{self.status} after {self.sent / MB:.1f} MB sent ({self.ended}, "
            f"{self.seconds:.1f} s) {self.body[:160]!r}"
        )


def post_huge_body(
    server: Daphne, path: str, *, size: int, chunked: bool, source: str = ATTACKER_ADDRESS
) -> HugeBodyAnswer:
    """POST ``size`` bytes to ``path``, reading the answer as soon as there is one.

    With ``chunked`` there is no Content-Length: the server can only count.
    The headers go first, then a 0.5 s pause in which a server that refuses by
    Content-Length has answered; the body then goes in 64 KiB pieces, each
    after a look for an answer, so the answer is read before a reset can
    discard it.
    """
    sock = socket.create_connection(("127.0.0.1", server.port), source_address=(source, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\nConnection: close\r\n\r\n"
    )
    piece = b"x" * (64 * 1024)
    frame = f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece
    received = b""
    sent = 0
    ended = "answered"
    started = time.monotonic()
    try:
        sock.sendall(head.encode())
        readable, _, _ = select.select([sock], [], [], 0.5)
        while not readable and sent < size:
            _, writable, _ = select.select([], [sock], [], 30)
            if not writable:
                ended = "stalled"
                break
            try:
                sock.sendall(frame)
            except (BrokenPipeError, ConnectionResetError):
                ended = "reset"
                break
            sent += len(piece)
            readable, _, _ = select.select([sock], [], [], 0)
        if sent >= size and chunked:
            with contextlib.suppress(OSError):
                sock.sendall(b"0\r\n\r\n")
        sock.settimeout(120)
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                received += data
                if _complete(received):
                    break
        except (ConnectionResetError, TimeoutError) as exc:
            if not received:
                ended = "reset" if isinstance(exc, ConnectionResetError) else "no answer"
    finally:
        sock.close()
    seconds = time.monotonic() - started
    status, body = _parse_answer(received)
    return HugeBodyAnswer(status, body, sent, seconds, ended)


def _complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return False


def _parse_answer(data: bytes) -> tuple[int | None, bytes]:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return None, data
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None, data
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    return status, body


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            break
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out
