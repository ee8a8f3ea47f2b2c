"""One viewer's stream of a feed, whatever carries it (WebSocket or Server-Sent Events).

The contract (docs/PROTOCOL.md): a ``hello``, then every sample exactly once,
in ``seq`` order. The viewer joins the feed's hub group *before* reading the
snapshot, so a sample committed in between is either in the snapshot or
buffered; the sequence number removes the overlap. Any gap (a missed pub/sub
message, Redis restarting) is filled from the database, the source of truth.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from streams import events, selectors
from streams.models import Feed
from streamsite import frames, metrics
from streamsite.frames import encode
from streamsite.hub import Hub, Item
from streamsite.presence import Presence
from streamsite.sharedread import SharedRead

log = logging.getLogger(__name__)

# Called with a frame's text and, for samples and hellos, the seq it brings the viewer to.
Send = Callable[[str, int | None], Awaitable[None]]
# The broadcast fast path (streamsite.server): writes a prepared frame, False if not sent.
WriteFrame = Callable[[bytes], bool]


def parse_since(raw: str) -> int | None:
    """A client's ``since`` (or ``Last-Event-ID``): a sequence number, else None.

    Plain ASCII digits only (``str.isdigit`` also takes "²", which ``int`` refuses),
    and at most 19 of them: a sequence number fits in 64 bits, and ``int`` of
    thousands of digits raises instead.
    """
    if raw.isascii() and raw.isdigit() and len(raw) <= 19:
        return int(raw)
    return None


@database_sync_to_async
def _samples_to_send(feed: Feed, after_seq: int) -> tuple[list[str], events.FeedState | None]:
    """Encoded frames of the samples after ``after_seq``, or a fresh snapshot if those are gone.

    Gone means pruned by retention, or more than FEED_REPLAY_LIMIT behind: the
    viewer is then told to resync and starts again from a fresh snapshot.
    """
    state = selectors.feed_state(feed.pk)
    last_seq = state["last_seq"]
    if after_seq >= last_seq:
        return [], None
    if last_seq - after_seq > settings.FEED_REPLAY_LIMIT:
        return [], state
    samples = selectors.samples_after(feed.pk, after_seq, limit=settings.FEED_REPLAY_LIMIT)
    if not samples or samples[0].seq != after_seq + 1:
        return [], state
    return [
        events.sample_frame_text(feed.kind, s.seq, s.value, s.ts, s.stats_json) for s in samples
    ], None


_oldest_seq = database_sync_to_async(selectors.oldest_seq)


_feed_state = SharedRead(database_sync_to_async(selectors.feed_state))


class FeedViewer:
    """Implements streamsite.hub.Subscriber for one connection."""

    # One per open connection: slots keep thousands of idle viewers small.
    __slots__ = (
        "feed", "group", "_on_failure", "_write_frame", "_send", "_details", "_last_seq",
        "_pending", "_catching_up", "_catch_up_task", "_joined", "_presence_id", "_watching",
    )  # fmt: skip

    def __init__(
        self,
        feed: Feed,
        send: Send,
        *,
        details: dict[str, Any],
        on_failure: Callable[[], Awaitable[None]],
        write_frame: WriteFrame | None = None,
    ) -> None:
        self.feed = feed
        self._on_failure = on_failure
        self._write_frame = write_frame
        self.group = events.feed_group(feed.uuid)
        self._send = send
        self._details = details
        self._last_seq = 0
        self._pending: list[Item] = []
        self._catching_up = True
        self._catch_up_task: asyncio.Task[None] | None = None
        self._joined = False
        self._presence_id: str | None = None
        self._watching = 0

    async def start(self, since: int | None) -> None:
        """Join the group, send the hello and everything after ``since``, then go live.

        Raises redis.RedisError, OSError or TimeoutError if live events are unavailable.
        """
        await Hub.current().join(self.group, self)
        self._joined = True
        self._presence_id, self._watching = await Presence.current().enter(
            self.group, self._details
        )
        state = await _feed_state(self.feed.pk)
        hello = events.hello_frame(state, watching=self._watching)
        if since is not None and since > hello["last_seq"]:
            await self._resync(since, "since is ahead of the feed", state)
        else:
            # The hello of a resumed stream is numbered with what the client
            # has (``since``), not the feed's last seq: an SSE client that drops
            # right after it must resume from ``since`` again, or lose the replay.
            await self._send(encode(hello), hello["last_seq"] if since is None else since)
            self._last_seq = hello["last_seq"] if since is None else since
        # A fresh viewer's hello is the state after it joined: whatever came since
        # is buffered (a gap in it is read from the database); a resumed one reads
        # what it missed first.
        await self._catch_up(read_first=since is not None)

    async def stop(self) -> None:
        if self._catch_up_task is not None:
            self._catch_up_task.cancel()
        if self._joined:
            self._joined = False
            await Hub.current().leave(self.group, self)
        if self._presence_id is not None:
            await Presence.current().leave(self.group, self._presence_id)
            self._presence_id = None

    async def hub_deliver(self, items: list[Item]) -> None:
        # The hot path: one call per viewer per message, frames sent as prepared.
        if self._catching_up:
            self._pending.extend(items)
            return
        write = self._write_frame
        last = self._last_seq
        for index, item in enumerate(items):
            seq = item.seq
            if seq is not None and seq != last + 1:
                if seq <= last:
                    continue
                self._last_seq = last
                self._pending.extend(items[index:])
                self._start_catch_up()
                return
            if write is not None:
                write(item.wire)
            else:
                await self._send(item.text, seq)
            if seq is not None:
                last = seq
        self._last_seq = last

    async def hub_reconnected(self) -> None:
        if not self._catching_up:
            self._start_catch_up()

    def _start_catch_up(self) -> None:
        self._catching_up = True
        self._catch_up_task = asyncio.create_task(self._catch_up())

    async def _catch_up(self, *, read_first: bool = True) -> None:
        """From ``_last_seq`` to live: the database first, then what the hub buffered."""
        self._catching_up = True
        try:
            while True:
                if read_first:
                    texts, fresh_state = await _samples_to_send(self.feed, self._last_seq)
                    if fresh_state is not None:
                        await self._resync(self._last_seq, "samples no longer kept", fresh_state)
                    for frame in texts:
                        self._last_seq += 1
                        await self._send(frame, self._last_seq)
                read_first = True
                if not await self._drain_pending_in_order():
                    break
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("viewer of %s: catch-up failed", self.feed.uuid)
            self._catching_up = False
            await self._on_failure()
        finally:
            self._catching_up = False

    async def _drain_pending_in_order(self) -> bool:
        """Send the buffered frames that continue the sequence; True if a gap remains."""
        while self._pending:
            pending, self._pending = self._pending, []
            for index, (seq, frame, _) in enumerate(pending):
                if seq is None:
                    await self._send(frame, None)
                elif seq == self._last_seq + 1:
                    await self._send(frame, seq)
                    self._last_seq = seq
                elif seq > self._last_seq:
                    # Keep what arrived while we were sending, after the gap.
                    self._pending = pending[index:] + self._pending
                    return True
        return False

    async def _resync(self, since: int, reason: str, state: events.FeedState) -> None:
        metrics.inc("viewers_resynced_total")
        oldest = await _oldest_seq(self.feed.pk)
        await self._send(encode(frames.resync(reason=reason, since=since, oldest_seq=oldest)), None)
        # The count this viewer joined with; presence frames since have carried any change.
        hello = events.hello_frame(state, watching=self._watching)
        await self._send(encode(hello), hello["last_seq"])
        self._last_seq = hello["last_seq"]
