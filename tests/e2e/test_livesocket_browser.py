"""static/js/livesocket.js in Chromium: the close-code table of docs/PROTOCOL.md.

A scripted WebSocket server closes every connection with one code; the page's
LiveSocket must stop and say why (4403, 4429, 4400), back off (1011, 1013), or
reconnect at once as before (anything else). The document page, on the real
server, stops the same way when its share key is rotated.
"""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import websockets
from django.db import connection

from documents.services import document_share_key_rotate
from tests.conftest import ROOT, Daphne
from tests.documents import conftest as documents

pytestmark = [pytest.mark.browser]

# The document fixtures live with the document tests.
acme_document = documents.acme_document

LIVESOCKET = ROOT / "static" / "js" / "livesocket.js"


class ScriptedServer:
    """Sends ``frames`` on every connection, then closes it with ``code``; counts connections."""

    def __init__(self, frames: list[dict], code: int) -> None:
        self.frames, self.code = frames, code
        self.connections = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _handle(self, ws) -> None:
        self.connections += 1
        for frame in self.frames:
            await ws.send(json.dumps(frame))
        await ws.close(self.code, "scripted")

    async def _serve(self):
        self.server = await websockets.serve(self._handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    def __enter__(self) -> str:
        self.thread.start()
        port = asyncio.run_coroutine_threadsafe(self._serve(), self.loop).result(10)
        return f"ws://127.0.0.1:{port}/"

    def __exit__(self, *exc) -> None:
        self.server.close()
        asyncio.run_coroutine_threadsafe(self.server.wait_closed(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def follow(browser, url: str):
    """A blank page running one LiveSocket on ``url``, recording its states and frames."""
    page = browser.new_page()
    page.set_content("<!doctype html><title>livesocket</title>")
    page.add_script_tag(path=str(LIVESOCKET))
    page.evaluate(
        """(url) => {
            window.states = [];
            window.frames = [];
            new LiveSocket({
                url: () => url,
                onMessage: (frame) => window.frames.push(frame),
                onState: (state, delay, reason) => window.states.push({state, delay, reason}),
            });
        }""",
        url,
    )
    return page


def delays(page) -> list[float]:
    return page.evaluate(
        "() => window.states.filter((s) => s.state === 'reconnecting' && s.delay).map((s) => s.delay)"
    )


@pytest.mark.parametrize(
    "code,error,says",
    [
        (4403, "revoked", "Access was revoked"),
        (4429, "too_many_connections", "Too many live pages"),
        (4400, "bad_value", "bad parameter"),
    ],
)
def test_close_codes_that_reconnecting_cannot_fix_stop_the_socket_and_say_why(
    browser, code, error, says
):
    frames = [{"type": "error", "error": error, "message": "no"}]
    server = ScriptedServer(frames, code)
    with server as url:
        page = follow(browser, url)
        page.wait_for_function("window.states.some((s) => s.state === 'stopped')")
        stopped = page.evaluate("() => window.states.find((s) => s.state === 'stopped')")
        assert says in stopped["reason"]
        assert page.evaluate("() => window.frames") == frames  # the page gets the error frame
        page.wait_for_timeout(2000)  # longer than the first reconnect delay (at most 0.625 s)
        assert server.connections == 1
        assert delays(page) == []


@pytest.mark.parametrize("code", [1011, 1013])
def test_overload_close_codes_back_off_exponentially_from_two_seconds(browser, code):
    frames = [{"type": "error", "error": "unavailable", "message": "try later"}]
    server = ScriptedServer(frames, code)
    with server as url:
        page = follow(browser, url)
        page.wait_for_function("window.states.filter((s) => s.delay).length >= 2", timeout=15_000)
        first, second = delays(page)[:2]
        # 2 s then 4 s, each within the jitter of ±25 %: an accepted-then-closed
        # connection does not reset the backoff.
        assert 1500 <= first <= 2500
        assert 3000 <= second <= 5000
        assert server.connections >= 2


def test_other_close_codes_reconnect_promptly_as_before(browser):
    frames = [{"type": "hello", "last_seq": 0}]
    server = ScriptedServer(frames, 4008)  # "read too slowly": reconnect with since
    with server as url:
        page = follow(browser, url)
        page.wait_for_function("window.states.filter((s) => s.delay).length >= 3")
        assert all(375 <= delay <= 625 for delay in delays(page)[:3])
        assert server.connections >= 3
        assert not page.evaluate("() => window.states.some((s) => s.state === 'stopped')")


def in_thread(function, **kwargs):
    """ORM calls from a thread: Playwright's sync API keeps an event loop running in this one."""

    def call():
        try:
            return function(**kwargs)
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result()


@pytest.mark.django_db(transaction=True)
def test_document_page_stops_and_says_why_when_its_share_key_is_rotated(acme_document, browser):
    server = Daphne().start()
    try:
        page = browser.new_page()
        opened = []
        page.on("websocket", lambda ws: opened.append(ws.url))
        page.goto(f"{server.http}{acme_document.get_absolute_url()}?key={acme_document.share_key}")
        page.wait_for_function("document.getElementById('status').dataset.state === 'live'")
        in_thread(document_share_key_rotate, document=acme_document)
        page.wait_for_function("document.getElementById('status').dataset.state === 'stopped'")
        error = page.locator("#error")
        assert error.is_visible() and "Access was revoked" in error.inner_text()
        page.wait_for_timeout(7000)  # past the 6 s after which an error frame's message fades
        assert error.is_visible() and len(opened) == 1
    finally:
        server.stop()
