"""Real-socket clients for end-to-end tests."""

from __future__ import annotations

import asyncio
import json


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
