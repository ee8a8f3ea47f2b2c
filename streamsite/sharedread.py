"""One read for many callers who need the same answer as of "after I asked"."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Any


class SharedRead:
    """A read shared by every caller who asked before it started (per key, per event loop).

    A hello needs the feed's state as of a moment after the viewer joined the
    hub group; any read that *starts* after the call satisfies it. A thousand
    viewers of one feed arriving at once then cost a few reads, not a thousand
    trips through the one database thread: callers who arrive while a read is
    running wait for the next one, which starts as soon as that one ends and
    serves all of them. Access checks are shared the same way: a check that
    starts after a handshake joined its tenant's control group (or after a
    revocation notice arrived) answers for every handshake asking the same.
    """

    def __init__(self, read: Callable[..., Awaitable[Any]]) -> None:
        self._read = read
        self._loops: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[dict[Any, asyncio.Future], dict[Any, asyncio.Future]]
        ] = weakref.WeakKeyDictionary()

    async def __call__(self, key: Any, *args: Any) -> Any:
        """The result of ``read(*args)`` (or ``read(key)``), read after this call began."""
        loop = asyncio.get_running_loop()
        running, queued = self._loops.setdefault(loop, ({}, {}))
        current = running.get(key)
        if current is None:
            return await asyncio.shield(self._start(running, key, args))
        task = queued.get(key)
        if task is None:
            task = queued[key] = asyncio.ensure_future(
                self._next(running, queued, key, args, current)
            )
        return await asyncio.shield(task)

    def _start(self, running: dict[Any, asyncio.Future], key: Any, args: tuple) -> asyncio.Future:
        task = running[key] = asyncio.ensure_future(self._read(*(args or (key,))))
        task.add_done_callback(lambda done: running.pop(key) if running.get(key) is done else None)
        return task

    async def _next(self, running, queued, key: Any, args: tuple, previous: asyncio.Future) -> Any:
        await asyncio.wait([previous])
        del queued[key]  # who asks from now on waits for the read after this one
        return await self._start(running, key, args)
