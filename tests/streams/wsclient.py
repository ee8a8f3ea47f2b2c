"""Helpers to drive the real ASGI application (streamsite.asgi) in-process."""

from __future__ import annotations

import asyncio
import json

from channels.testing import WebsocketCommunicator

from streamsite.asgi import application

# The test site is served on https://testserver: SITE_ORIGINS unset, ALLOWED_HOSTS
# holds "testserver" (Django adds it for tests), so https:// on port 443.
SAME_ORIGIN = (b"origin", b"https://testserver")


def communicator(
    path: str, *, cookie: str | None = None, origin: bytes | None = b"same", headers=()
):
    all_headers = list(headers)
    if origin == b"same":
        all_headers.append(SAME_ORIGIN)
    elif origin is not None:
        all_headers.append((b"origin", origin))
    if cookie:
        all_headers.append((b"cookie", cookie.encode()))
    return WebsocketCommunicator(application, path, headers=all_headers)


async def receive(comm: WebsocketCommunicator, *, presence: bool = False) -> dict:
    """The next frame; presence frames (which come at their own pace) are skipped unless asked for."""
    while True:
        frame = json.loads(await comm.receive_from(timeout=3.0))
        if presence or frame.get("type") != "presence":
            return frame


async def refused(comm: WebsocketCommunicator) -> bool:
    connected, _ = await comm.connect(timeout=5)
    if connected:
        await comm.disconnect()
    return not connected


async def drain(comm: WebsocketCommunicator, quiet_for: float = 0.5) -> list[dict]:
    """Every frame but presence, until none has come for ``quiet_for`` seconds.

    Reads the output queue itself: the communicator's own receive cancels the
    application when it times out, and a quiet viewer must stay connected.
    """
    frames = []
    while True:
        try:
            message = await asyncio.wait_for(comm.output_queue.get(), quiet_for)
        except TimeoutError:
            if comm.future.done():
                comm.future.result()  # surface a crashed consumer
            return frames
        if message["type"] == "websocket.close":
            frames.append({"type": "close", "code": message.get("code")})
            continue
        frame = json.loads(message["text"])
        if frame.get("type") != "presence":
            frames.append(frame)


async def quiet(comm: WebsocketCommunicator, seconds: float) -> bool:
    """Nothing but presence frames for ``seconds``: nothing moved, nothing was said."""
    return await drain(comm, seconds) == []
