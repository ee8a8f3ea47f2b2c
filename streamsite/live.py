"""Base class for Streamsite's WebSocket consumers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.db import DatabaseError

from streamsite import metrics, slots
from streamsite.frames import Close, ErrorCode, encode, error_frame, websocket_frame

log = logging.getLogger(__name__)


class _Refused(Exception):
    """Raised out of connect() once the refusal has been sent."""


class TokenBucket:
    """``rate`` events a second on average, ``burst`` at once."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class LiveConsumer(AsyncWebsocketConsumer):
    """A consumer fed by the event loop's hub (streamsite.hub), not by a layer channel.

    Broadcasts, whether a service published them or a ``group_send`` through
    the channel layer (whose groups are the hub's), reach viewers through the
    hub, which costs one call per viewer instead of a Redis round trip and a
    dispatch (docs/ARCHITECTURE.md, "One runtime per event loop"). So a
    connection needs no layer channel of its own and no receive loop.
    """

    metrics_kind = "other"
    _counted_open = False
    _bucket: TokenBucket | None = None
    _refused_frames = 0
    _slots: slots.Lease | None = None
    _revoked_early = False
    _refusing = False  # closing (a refused frame, a revocation): receive_now takes no more
    # Frames read while accept() completes, held until it has (receive_now's way in).
    _early: list[tuple[str | None, bytes | None]] | None = None
    _steps: deque[Coroutine[Any, Any, None]] | None = None  # see _later
    _stepper: asyncio.Task[None] | None = None

    # Limits on what a client may send; consumers that take input raise them.
    def max_frame_bytes(self) -> int:
        return 4096

    def frames_per_second(self) -> float:
        return 20.0

    @property
    def write_frame(self):
        """The server's prepared-frame writer (streamsite.server), or None under other servers."""
        return (self.scope.get("extensions") or {}).get("streamsite.write_frame")

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        metrics.Flusher.ensure_running()
        try:
            await super().websocket_connect(message)
        except _Refused:
            pass
        except DatabaseError as exc:
            # The database is away: a clear "unavailable" (1011), not an HTTP 500.
            log.warning("handshake of %s: database unavailable (%s)", self.scope["path"], exc)
            await self.close_unavailable()

    async def accept(self, subprotocol: str | None = None, headers=None) -> None:
        """Accept, unless a connection cap of its user, share key or address is reached.

        Over a cap the socket opens only to say which (``too_many_connections``
        with ``limit``) and is closed with 4429; nothing is counted.
        """
        client = self.scope.get("client")
        claims = slots.connection_claims(
            user=self.scope.get("user"),
            key=self.query_param("key"),
            address=client[0] if client else None,
        )
        try:
            self._slots = await slots.claim(claims)
        except slots.Refused as refused:
            await super().accept(subprotocol, headers)
            await self.send_text(encode(slots.too_many_connections(refused)))
            await self.close(code=Close.TOO_MANY_CONNECTIONS)
            raise _Refused from None
        if self._revoked_early:
            # Access went while the handshake was being admitted (``revoked``): refused.
            lease, self._slots = self._slots, None
            await lease.release()
            await self.close()
            raise _Refused
        self._take_messages()
        await super().accept(subprotocol, headers)
        self._counted_open = True
        metrics.inc("connections_open", kind=self.metrics_kind)
        self._opened()

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        if self._counted_open:
            self._counted_open = False
            metrics.inc("connections_open", -1, kind=self.metrics_kind)
        if self._slots is not None:
            lease, self._slots = self._slots, None
            await lease.release()
        await super().websocket_disconnect(message)

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        """Size and rate limits before any parsing: abuse costs the abuser, not the others."""
        refusal = self._refusal(message.get("text"), message.get("bytes"))
        if refusal is not None:
            answer, code = refusal
            if answer is not None:
                await self.send_text(answer)
            if code is not None:
                await self.close(code=code)
            return
        await super().websocket_receive(message)

    def _refusal(
        self, text: str | None, data: bytes | None
    ) -> tuple[str | None, int | None] | None:
        """Count the frame and apply the socket's size and rate limits: None if it may
        be handled, else the error frame to answer and the close code (either may be
        None). Synchronous, so that both ways in (receive, receive_now) share it."""
        metrics.inc("frames_in_total", kind=self.metrics_kind)
        limit = self.max_frame_bytes()
        if text is not None:
            # A character is at most 4 bytes of UTF-8: only frames near the limit are encoded.
            size = len(text) if len(text) * 4 <= limit else len(text.encode())
        else:
            size = len(data or b"")
        if size > limit:
            return error_frame(
                ErrorCode.TOO_LARGE, f"frames are limited to {limit} bytes"
            ), Close.TOO_BIG
        if self._bucket is None:
            rate = self.frames_per_second()
            self._bucket = TokenBucket(rate, 2 * rate)
        if not self._bucket.take():
            self._refused_frames += 1
            if self._refused_frames > self._bucket.burst:
                return None, Close.POLICY
            return error_frame(ErrorCode.RATE_LIMITED, "too many frames; slow down"), None
        return None

    # -- receiving in the read itself (streamsite.server's take_messages) ----------

    def receive_now(self, text: str | None, data: bytes | None) -> None:
        """Consumers that define this get their frames here, synchronously, in the
        server's read (after the limits), instead of through ``receive``."""
        raise NotImplementedError

    def _take_messages(self) -> None:
        """Before the accept: frames read from then on go to receive_now, those that
        arrive while the accept completes held until it has (see accept)."""
        take = (self.scope.get("extensions") or {}).get("streamsite.take_messages")
        if take is None or type(self).receive_now is LiveConsumer.receive_now:
            return
        self._early = []
        take(self._message_now)

    def _message_now(self, text: str | None, data: bytes | None) -> None:
        early = self._early
        if early is not None:
            # autobahn reads on as soon as the 101 is out, inside accept(): a frame
            # read then waits for the accept to finish, so that frames keep their order.
            early.append((text, data))
            return
        if self._refusing:
            return  # the server is closing (a refused frame, a revocation)
        refusal = self._refusal(text, data)
        if refusal is None:
            self.receive_now(text, data)
            return
        answer, code = refusal
        if answer is not None:
            self.send_now(answer)
        if code is not None:
            self._refusing = True
            self.close_soon(code)

    def _opened(self) -> None:
        early, self._early = self._early, None
        for text, data in early or ():
            self._message_now(text, data)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Why override AsyncConsumer.__call__, which Channels documents no hook
        # around: its loop (await_many_dispatch) keeps a task per input and an
        # asyncio.wait around them, built for a channel layer. These consumers
        # have one input, the socket (the layer's groups reach them through the
        # hub, not through a channel per connection), so they read it directly:
        # one task per connection instead of three, a few KiB less per idle
        # viewer, and no Redis subscription per connection. What __call__ sets up
        # for its handlers is set here too: scope, channel_layer (None: no
        # channel of their own) and base_send.
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Why override dispatch (public, but its body is Channels'): Channels 4.3 runs close_old_connections() through a thread hop before
        # every handler. Our handlers reach the database only through
        # database_sync_to_async, which already does that on its own thread,
        # so the hop is pure cost (it halves throughput on the publish socket).
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    def query_param(self, name: str) -> str | None:
        values = parse_qs(self.scope.get("query_string", b"").decode("latin-1")).get(name)
        return values[-1] if values else None

    def header(self, name: bytes) -> str | None:
        for key, value in self.scope.get("headers", ()):
            if key == name:
                return value.decode("latin-1")
        return None

    async def send_text(self, text: str) -> None:
        if not self._written(text):
            metrics.inc("frames_out_total", kind=self.metrics_kind)
            await self.base_send({"type": "websocket.send", "text": text})

    def send_now(self, text: str) -> None:
        """send_text from synchronous code: written at once (our server), else sent in
        order by one task (any other ASGI server)."""
        if not self._written(text):
            self._later(self.send_text(text))

    def _written(self, text: str) -> bool:
        """Straight to the socket (streamsite/server.py), in the order of ASGI sends;
        False under a server without ``streamsite.write_frame``."""
        write = self.write_frame
        if write is None:
            return False
        metrics.inc("frames_out_total", kind=self.metrics_kind)
        write(websocket_frame(text))
        return True

    def close_soon(self, code: int) -> None:
        """close() from synchronous code, after what send_now has sent."""
        self._later(self.close(code=code))

    def _later(self, step: Coroutine[Any, Any, None]) -> None:
        # One task runs the steps in order (a send then a close stay in that order).
        steps = self._steps
        if steps is None:
            steps = self._steps = deque()
        steps.append(step)
        if len(steps) == 1:
            self._stepper = asyncio.get_running_loop().create_task(self._run_steps(steps))

    async def _run_steps(self, steps: deque[Coroutine[Any, Any, None]]) -> None:
        while steps:
            try:
                await steps[0]
            except Exception:
                log.exception("%s: a deferred send or close failed", self.scope.get("path"))
            finally:
                del steps[0]

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        # Once the server closes (a limit, a revocation), receive_now takes nothing more.
        self._refusing = True
        # ASGI's close code is an int; autobahn refuses an int subclass (frames.Close).
        if isinstance(code, int) and not isinstance(code, bool):
            code = int(code)
        await super().close(code, reason)

    async def close_unavailable(self) -> None:
        """Live events are down (Redis away): say so and close 1011; the client retries later.

        Accepts first if need be, so that the client reads why (a handshake
        refused before accept is an HTTP 403, which means "not allowed").
        """
        if not self._counted_open:
            await super().accept()
        await self.send_text(
            error_frame(ErrorCode.UNAVAILABLE, "live events are unavailable; retry")
        )
        await self.close(code=Close.UNAVAILABLE)

    async def revoked(self) -> None:
        """The credential this connection came in with no longer holds (streamsite.control)."""
        if not self._counted_open:
            # Still in its handshake: refused where it would have been accepted.
            self._revoked_early = True
            return
        metrics.inc("connections_revoked_total", kind=self.metrics_kind)
        await self.send_text(error_frame(ErrorCode.REVOKED, "access was revoked"))
        await self.close(code=Close.ACCESS_REVOKED)


class RefuseConsumer(AsyncWebsocketConsumer):
    """Refuses the handshake (HTTP 403): for paths that name no socket."""

    # No layer channel (and Redis subscription) for a connection that is refused.
    channel_layer_alias = "none"

    async def connect(self) -> None:
        await self.close()
