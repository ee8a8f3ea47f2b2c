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

from streams import access, services
from streams.ingest import IngestWriter
from streams.models import Producer
from streams.viewer import FeedViewer, parse_since
from streamsite import metrics
from streamsite.control import AccessWatch, Credential, Decisions, session_key_of
from streamsite.frames import Close, ErrorCode, encode, error_frame
from streamsite.live import LiveConsumer
from streamsite.sharedread import SharedRead
from tenants import quotas
from tenants.access import session_user

log = logging.getLogger(__name__)

# A publisher that sends this many frames, or samples, without waiting for acks
# is cut off rather than let its backlog grow without bound (10,000 frames of
# 1,000 values each held 300 MB).
MAX_UNACKED_FRAMES = 10_000
MAX_UNACKED_SAMPLES = 100_000
# Frames written in one transaction: batching is what lets one feed ingest
# thousands of samples a second, since each commit has a fixed cost.
MAX_BATCH = 1000

_FRAMES_OUT = metrics.key("frames_out_total", "feed_viewer")


def _feed_for_viewer_now(session_key, user, feed_uuid, key, foreign_origin):
    """The feed if the viewer may watch it now (with the session's user as it is now)."""
    now = session_user(session_key, user)
    return access.feed_for_viewer(now, feed_uuid, key=key, foreign_origin=foreign_origin)


_viewer_check = SharedRead(database_sync_to_async(_feed_for_viewer_now))
_publishing_producer = database_sync_to_async(access.producer_for_token)


class FeedViewerConsumer(LiveConsumer):
    """``/ws/feeds/<uuid>/``: a hello, then every sample once, in order (streams/viewer.py)."""

    metrics_kind = "feed_viewer"
    viewer: FeedViewer | None = None
    watch: AccessWatch | None = None
    _plain = False

    async def connect(self) -> None:
        user = self.scope.get("user")
        key = self.query_param("key")
        feed_uuid = self.scope["url_route"]["kwargs"]["feed_uuid"]
        foreign_origin = self.scope.get("foreign_origin")
        user_id = user.pk if user is not None and user.is_authenticated else None
        session_key = session_key_of(self.scope)
        # Handshakes asking the same question share its answer: reused while no
        # notice of the tenant came (streamsite.control.Decisions), else read once
        # for all who asked meanwhile (SharedRead). A reconnect storm costs a check.
        question = ("feed viewer", str(feed_uuid), key, foreign_origin, user_id, session_key)
        asked = (session_key, user, feed_uuid, key, foreign_origin)
        feed = Decisions.current().lookup(question)
        if feed is None:
            feed = await _viewer_check(question, *asked)
        if feed is None:
            await self.close()
            return

        async def still_allowed() -> bool:
            return await _viewer_check(question, *asked) is not None

        self.watch = AccessWatch(
            feed.tenant.uuid,
            Credential(str(feed.uuid), user_id=user_id),
            still_allowed=still_allowed,
            revoke=self.revoked,
        )
        if not await self.watch.admit(self, remember=(question, feed)):
            return
        await self.accept()
        since_raw = self.query_param("since")
        since = parse_since(since_raw) if since_raw is not None else None
        if since_raw is not None and since is None:
            await self.send_text(error_frame(ErrorCode.BAD_FRAME, "since must be a whole number"))
            await self.close(code=Close.BAD_QUERY)
            return
        self._plain = self.query_param("format") == "plain"
        self.viewer = FeedViewer(
            feed,
            self._send_frame,
            details=viewer_details(user, key),
            on_failure=self._failed,
            # Plain viewers get their own text per sample, not the shared JSON frame.
            write_frame=None if self._plain else self.write_frame,
        )
        try:
            await self.viewer.start(since)
        except (redis.RedisError, OSError, TimeoutError):
            await self.close_unavailable()

    async def send_text(self, text: str) -> None:
        if not self._plain:  # plain viewers get values only, never a JSON frame
            await super().send_text(text)

    async def _send_frame(self, text: str, seq: int | None) -> None:
        if self._plain:
            # ``?format=plain``: each sample's value as the whole text frame ("1",
            # "0.37"), nothing else, for the write-ups' viewers (int(message)).
            frame = json.loads(text)
            if frame.get("type") != "sample":
                return
            text = json.dumps(frame["value"])
        metrics.bump(_FRAMES_OUT)
        await self.base_send({"type": "websocket.send", "text": text})

    async def _failed(self) -> None:
        await self.close(code=Close.UNAVAILABLE)

    async def disconnect(self, code: int) -> None:
        if self.watch is not None:
            await self.watch.stop()
        if self.viewer is not None:
            await self.viewer.stop()


def viewer_details(user, key: str | None) -> dict[str, str | None]:
    """What presence records of a viewer (shown to operators): never the key itself."""
    if user is not None and user.is_authenticated:
        return {"user": user.get_username(), "via": "session"}
    return {"user": None, "via": "share key" if key else "unknown"}


class FeedPublishConsumer(LiveConsumer):
    """``/ws/feeds/<uuid>/publish/``: samples in, acks out once durable, in order."""

    metrics_kind = "feed_publisher"
    producer: Producer
    watch: AccessWatch | None = None

    def max_frame_bytes(self) -> int:
        return settings.PUBLISH_MAX_BYTES

    def frames_per_second(self) -> float:
        return settings.PUBLISH_RATE_LIMIT

    async def connect(self) -> None:
        token = self._token()
        feed_uuid = self.scope["url_route"]["kwargs"]["feed_uuid"]
        producer = await _publishing_producer(token, feed_uuid)
        if producer is None:
            await self.close()
            return
        self.producer = producer
        self._samples_per_second = quotas.limit_for(producer.tenant, "samples_per_second")
        # Every frame not yet answered, in arrival order: [kind, payload, future];
        # the future is set once the frame is handed to the writer.
        self._unanswered: deque[list[Any]] = deque()
        self._unsubmitted: list[list[Any]] = []
        self._unanswered_samples = 0
        self._closing = False

        async def still_allowed() -> bool:
            return await _publishing_producer(token, feed_uuid) is not None

        self.watch = AccessWatch(
            producer.tenant.uuid,
            Credential(str(feed_uuid), producer_uuid=str(producer.uuid)),
            still_allowed=still_allowed,
            revoke=self.revoked,
        )
        if not await self.watch.admit(self):
            return
        await self.accept()

    def _token(self) -> str | None:
        authorization = self.header(b"authorization") or ""
        if authorization.lower().startswith("bearer "):
            return authorization[7:].strip()
        return self.query_param("token")

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        self.receive_now(text_data, bytes_data)  # under a server without take_messages

    def receive_now(self, text: str | None, data: bytes | None) -> None:
        """A frame, in the server's read: parsed, queued for the writer (handed over
        once per read, so that frames read together are asked for and written
        together), answered in order as their writes complete (``_answer``). Nothing
        is taken once the socket is closing (streamsite.live: a limit, a revocation)."""
        if self._closing or self._refusing:
            return
        if (
            len(self._unanswered) >= MAX_UNACKED_FRAMES
            or self._unanswered_samples >= MAX_UNACKED_SAMPLES
        ):
            self._closing = True
            self._unsubmitted.clear()
            self.close_soon(Close.TRY_AGAIN_LATER)
            return
        kind, payload = self._parse(text)
        entry = [kind, payload, None]
        self._unanswered.append(entry)
        if kind != "values":
            self._answer()
            return
        self._unanswered_samples += len(payload.inputs)
        if not self._unsubmitted:
            asyncio.get_running_loop().call_soon(self._submit)
        self._unsubmitted.append(entry)

    def _parse(self, text: str | None) -> tuple[str, Any]:
        if text is None:
            return "error", error_frame(ErrorCode.BAD_FRAME, "send JSON text frames, not binary")
        try:
            frame = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested too deep
            return "error", error_frame(ErrorCode.BAD_JSON, "the frame is not valid JSON")
        try:
            return "values", services.publish_frame_parse(self.producer.feed.kind, frame)
        except services.SampleRejected as exc:
            return "error", encode(exc.frame())

    async def disconnect(self, code: int) -> None:
        # Frames not yet handed to the writer are dropped: they were never
        # acknowledged, so the client resends them, and a closed (or cut-off)
        # publisher must not keep writing long after it is gone. Frames already
        # handed over are written; their answers go nowhere.
        self._closing = True
        if hasattr(self, "_unsubmitted"):
            self._unsubmitted.clear()
        if self.watch is not None:
            await self.watch.stop()

    def _submit(self) -> None:
        """Hand the frames read since the last call to the writer, MAX_BATCH samples
        at a time. One write per frame, so that a frame the feed refuses is refused
        alone; the writer asks the tenant's samples_per_second for them first
        (streams/ingest.py)."""
        frames, self._unsubmitted = self._unsubmitted, []
        if self._closing:
            return
        writer = IngestWriter.current()
        start = 0
        while start < len(frames):
            end, count = start, 0
            while end < len(frames) and (end == start or count < MAX_BATCH):
                count += len(frames[end][1].inputs)
                end += 1
            batch = frames[start:end]
            futures = writer.submit_counted(
                self.producer.feed,
                [(entry[1].inputs, entry[1].ids) for entry in batch],
                tenant=self.producer.tenant,
                rate=self._samples_per_second,
                source=self,
            )
            for entry, future in zip(batch, futures, strict=True):
                entry[2] = future
                future.add_done_callback(self._answered)
            start = end

    def _answered(self, _future: asyncio.Future[Any]) -> None:
        self._answer()

    def _answer(self) -> None:
        """Answer the frames at the head whose outcome is known, in arrival order:
        an ack, the feed's refusal, or "unavailable" when the database failed."""
        unanswered = self._unanswered
        failure: BaseException | None = None
        while unanswered:
            kind, payload, future = unanswered[0]
            if kind != "values":
                unanswered.popleft()
                self.send_now(payload)
                continue
            if future is None or not future.done():
                break
            unanswered.popleft()
            self._unanswered_samples -= len(payload.inputs)
            outcome = future.exception() if not future.cancelled() else asyncio.CancelledError()
            if outcome is None:
                self.send_now(encode(future.result().ack(values_frame=payload.is_values)))
            elif isinstance(outcome, services.SampleRejected):
                self.send_now(encode(outcome.frame()))
            else:
                failure = failure or outcome
                self.send_now(error_frame(ErrorCode.UNAVAILABLE, "not stored; send it again"))
        if failure is not None:  # the database, not a frame: logged once for those answered
            log.error(
                "publisher of %s: write failed",
                self.producer.feed.uuid,
                exc_info=(type(failure), failure, failure.__traceback__),
            )
