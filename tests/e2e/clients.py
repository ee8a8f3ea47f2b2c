"""Real-socket clients for end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable

import websockets


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` every 0.1 s; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


async def next_sample(socket) -> dict:
    """The next sample frame within 10 s (other frames, such as presence, are skipped)."""
    async with asyncio.timeout(10):
        while True:
            frame = json.loads(await socket.recv())
            if frame["type"] == "sample":
                return frame


async def next_frame(socket) -> dict:
    """The next frame other than presence (which comes at its own pace), within 30 s."""
    async with asyncio.timeout(30):
        while True:
            frame = json.loads(await socket.recv())
            if frame["type"] != "presence":
                return frame


async def turn_page(steerer_url: str, follower_url: str, page_no: int) -> tuple[list, list]:
    """A steerer and a follower of one document: the page each is shown first, then the
    frame each gets once the steerer turns to ``page_no``."""
    async with (
        websockets.connect(steerer_url) as steerer,
        websockets.connect(follower_url) as follower,
    ):
        first = [(await next_frame(s))["page_no"] for s in (steerer, follower)]
        await steerer.send(json.dumps({"type": "page", "page_no": page_no}))
        turned = [await next_frame(s) for s in (steerer, follower)]
    return first, turned


class ReconnectingViewer:
    """A feed viewer that behaves as the feed page does: whenever its socket closes
    (or cannot open) it tries again after ``retry_seconds`` with ``?since=<last seq>``.

    It records every sample it gets, so a test can check "each seq exactly once,
    in order" across any number of reconnections.
    """

    def __init__(self, url: str, *, retry_seconds: float = 0.3) -> None:
        self.url = url
        self.retry_seconds = retry_seconds
        self.seqs: list[int] = []
        self.arrivals: list[tuple[float, dict]] = []  # (time.time() of receipt, sample frame)
        self.last_seq: int | None = None
        self.connects: list[float] = []  # time.monotonic() of each successful handshake
        self.disconnects: list[tuple[float, str]] = []  # when, and why (close code or error)
        self.resyncs: list[dict] = []
        self._after_resync = False
        self._progress = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> ReconnectingViewer:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_for_seq(self, seq: int) -> None:
        """Until this viewer has seen ``seq`` (callers bound it with ``asyncio.timeout``)."""
        await self._until(lambda: self.last_seq is not None and self.last_seq >= seq)

    async def wait_for_samples(self, count: int) -> None:
        await self._until(lambda: len(self.seqs) >= count)

    async def wait_for_hello(self) -> None:
        await self._until(lambda: self.last_seq is not None)

    async def wait_for_connects(self, count: int) -> None:
        await self._until(lambda: len(self.connects) >= count)

    async def _until(self, done: Callable[[], bool]) -> None:
        while not done():
            self._progress.clear()
            await self._progress.wait()

    def _address(self) -> str:
        if self.last_seq is None:
            return self.url
        return f"{self.url}{'&' if '?' in self.url else '?'}since={self.last_seq}"

    async def _run(self) -> None:
        while True:
            try:
                async with websockets.connect(self._address(), open_timeout=5) as socket:
                    self.connects.append(time.monotonic())
                    self._progress.set()
                    try:
                        async for message in socket:
                            self._take(json.loads(message))
                    finally:
                        self.disconnects.append((time.monotonic(), f"close {socket.close_code}"))
            except (OSError, TimeoutError, websockets.WebSocketException) as exc:
                if not isinstance(exc, websockets.ConnectionClosed):
                    self.disconnects.append((time.monotonic(), repr(exc)))
            await asyncio.sleep(self.retry_seconds)

    def _take(self, frame: dict) -> None:
        kind = frame["type"]
        if kind == "hello" and (self.last_seq is None or self._after_resync):
            self.last_seq, self._after_resync = frame["last_seq"], False
        elif kind == "resync":
            self.resyncs.append(frame)
            self._after_resync = True
        elif kind == "sample":
            self.seqs.append(frame["seq"])
            self.arrivals.append((time.time(), frame))
            self.last_seq = frame["seq"]
        self._progress.set()
