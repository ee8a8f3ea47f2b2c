"""WebSocket consumers of feeds: viewers and external producers."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from typing import Any

import redis
from channels.db import database_sync_to_async
from django.conf import settings

from streams import access, events, selectors, services
from streams.models import Feed, Producer
from streamsite.hub import Hub, Item
from streamsite.live import LiveConsumer, encode, error_frame

log = logging.getLogger(__name__)

# A publisher that sends this many frames without waiting for acks is cut off
# rather than let its backlog grow without bound.
MAX_UNACKED_FRAMES = 10_000
# Frames written in one transaction: batching is what lets one feed ingest
# thousands of samples a second, since each commit has a fixed cost.
MAX_BATCH = 1000

_viewer_feed = database_sync_to_async(access.feed_for_viewer)
_publishing_producer = database_sync_to_async(access.producer_for_token)
_hello = database_sync_to_async(selectors.feed_hello)
_append = database_sync_to_async(services.samples_append)


@database_sync_to_async
def _samples_to_send(feed: Feed, after_seq: int) -> tuple[list[str], events.HelloFrame | None]:
    """Encoded frames of the samples after ``after_seq``, or a fresh hello if those are gone.

    Gone means pruned by retention, or more than FEED_REPLAY_LIMIT behind: the
    viewer is then told to resync and starts again from a fresh snapshot.
    """
    hello = selectors.feed_hello(feed.pk)
    last_seq = hello["last_seq"]
    if after_seq >= last_seq:
        return [], None
    if last_seq - after_seq > settings.FEED_REPLAY_LIMIT:
        return [], hello
    samples = selectors.samples_after(feed.pk, after_seq, limit=settings.FEED_REPLAY_LIMIT)
    if not samples or samples[0].seq != after_seq + 1:
        return [], hello
    return [encode(events.sample_frame(feed.kind, s)) for s in samples], None


class FeedViewerConsumer(LiveConsumer):
    """``/ws/feeds/<uuid>/``: a hello, then every sample once, in order (docs/PROTOCOL.md).

    The viewer joins the feed's hub group *before* reading the snapshot, so a
    sample committed in between is either in the snapshot or buffered; the
    sequence number removes the overlap. Any gap (a missed pub/sub message,
    Redis restarting) is filled from the database.
    """

    feed: Feed
    _joined = False
    _catch_up_task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        feed = await _viewer_feed(
            self.scope.get("user"),
            self.scope["url_route"]["kwargs"]["feed_uuid"],
            key=self.query_param("key"),
            foreign_origin=self.scope.get("foreign_origin"),
        )
        if feed is None:
            await self.close()
            return
        self.feed = feed
        self.group = events.feed_group(feed.uuid)
        self._last_seq = 0
        self._pending: list[Item] = []
        self._catching_up = True
        await self.accept()

        since_raw = self.query_param("since")
        since = int(since_raw) if since_raw is not None and since_raw.isdigit() else None
        if since_raw is not None and since is None:
            await self.send_text(error_frame("bad_frame", "since must be a whole number"))
            await self.close(code=4400)
            return
        try:
            await Hub.current().join(self.group, self)
        except (redis.RedisError, OSError, TimeoutError):
            await self.send_text(error_frame("unavailable", "live events are unavailable"))
            await self.close(code=1011)
            return
        self._joined = True

        hello = await _hello(feed.pk)
        if since is not None and since > hello["last_seq"]:
            await self._send_resync(since, "since is ahead of the feed", hello)
        else:
            await self.send_text(encode(hello))
            self._last_seq = hello["last_seq"] if since is None else since
        await self._catch_up()

    async def disconnect(self, code: int) -> None:
        if self._catch_up_task is not None:
            self._catch_up_task.cancel()
        if self._joined:
            await Hub.current().leave(self.group, self)

    async def hub_deliver(self, items: list[Item]) -> None:
        if self._catching_up:
            self._pending.extend(items)
            return
        last = self._last_seq
        for index, (seq, frame) in enumerate(items):
            if seq is None:
                await self.base_send({"type": "websocket.send", "text": frame})
            elif seq == last + 1:
                await self.base_send({"type": "websocket.send", "text": frame})
                last = seq
            elif seq > last:
                self._last_seq = last
                self._pending.extend(items[index:])
                self._start_catch_up()
                return
        self._last_seq = last

    async def hub_reconnected(self) -> None:
        if not self._catching_up:
            self._start_catch_up()

    def _start_catch_up(self) -> None:
        self._catching_up = True
        self._catch_up_task = asyncio.create_task(self._catch_up())

    async def _catch_up(self) -> None:
        """From ``_last_seq`` to live: the database first, then what the hub buffered."""
        self._catching_up = True
        try:
            while True:
                frames, fresh_hello = await _samples_to_send(self.feed, self._last_seq)
                if fresh_hello is not None:
                    await self._send_resync(self._last_seq, "samples no longer kept", fresh_hello)
                for frame in frames:
                    await self.send_text(frame)
                self._last_seq += len(frames)
                if not await self._drain_pending_in_order():
                    break
        except Exception:
            log.exception("viewer of %s: catch-up failed", self.feed.uuid)
            await self.close(code=1011)
        finally:
            self._catching_up = False

    async def _drain_pending_in_order(self) -> bool:
        """Send the buffered frames that continue the sequence; True if a gap remains."""
        while self._pending:
            pending, self._pending = self._pending, []
            for index, (seq, frame) in enumerate(pending):
                if seq is None:
                    await self.send_text(frame)
                elif seq == self._last_seq + 1:
                    await self.send_text(frame)
                    self._last_seq = seq
                elif seq > self._last_seq:
                    # Keep what arrived while we were sending, after the gap.
                    self._pending = pending[index:] + self._pending
                    return True
        return False

    async def _send_resync(self, since: int, reason: str, hello: events.HelloFrame) -> None:
        oldest = await database_sync_to_async(selectors.oldest_seq)(self.feed.pk)
        await self.send_text(
            encode(events.resync_frame(reason=reason, since=since, oldest_seq=oldest))
        )
        await self.send_text(encode(hello))
        self._last_seq = hello["last_seq"]


class FeedPublishConsumer(LiveConsumer):
    """``/ws/feeds/<uuid>/publish/``: samples in, acks out once durable, in order."""

    producer: Producer

    async def connect(self) -> None:
        producer = await _publishing_producer(
            self._token(), self.scope["url_route"]["kwargs"]["feed_uuid"]
        )
        if producer is None:
            await self.close()
            return
        self.producer = producer
        self._queue: deque[tuple[str, Any]] = deque()
        self._wake = asyncio.Event()
        self._closing = False
        await self.accept()
        self._writer = asyncio.create_task(self._write_loop())

    def _token(self) -> str | None:
        authorization = self.header(b"authorization") or ""
        if authorization.lower().startswith("bearer "):
            return authorization[7:].strip()
        return self.query_param("token")

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if len(self._queue) >= MAX_UNACKED_FRAMES:
            await self.close(code=1013)
            return
        self._queue.append(self._parse(text_data))
        self._wake.set()

    def _parse(self, text: str | None) -> tuple[str, Any]:
        if text is None:
            return "error", error_frame("bad_frame", "send JSON text frames, not binary")
        try:
            frame = json.loads(text)
        except ValueError:
            return "error", error_frame("bad_json", "the frame is not valid JSON")
        try:
            return "values", services.sample_inputs_from_frame(self.producer.feed.kind, frame)
        except services.SampleRejected as exc:
            return "error", error_frame(exc.code, exc.message)

    async def disconnect(self, code: int) -> None:
        # Frames already received are still written; there is just nobody to ack.
        self._closing = True
        if hasattr(self, "_wake"):
            self._wake.set()

    async def _write_loop(self) -> None:
        while not (self._closing and not self._queue):
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                kind, payload = self._queue[0]
                if kind == "error":
                    self._queue.popleft()
                    await self.send_text(payload)
                    continue
                batch: list[list[tuple[float, float | None]]] = []
                count = 0
                while self._queue and self._queue[0][0] == "values" and count < MAX_BATCH:
                    batch.append(self._queue.popleft()[1])
                    count += len(batch[-1])
                await self._write_batch(batch)

    async def _write_batch(self, batch: list[list[tuple[float, float | None]]]) -> None:
        try:
            samples = await _append(
                feed=self.producer.feed, values=[v for inputs in batch for v in inputs]
            )
        except Exception:
            log.exception("publisher of %s: write failed", self.producer.feed.uuid)
            for _ in batch:
                await self.send_text(error_frame("unavailable", "not stored; send it again"))
            return
        position = 0
        for inputs in batch:
            position += len(inputs)
            await self.send_text(encode({"type": "ack", "seq": samples[position - 1].seq}))
