"""Base class for Streamsite's WebSocket consumers."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer

from streamsite import metrics

# Close code for a connection whose key, token or membership was revoked.
CLOSE_ACCESS_REVOKED = 4403


def encode(frame: dict[str, Any]) -> str:
    """The one JSON encoding of every frame Streamsite sends."""
    return json.dumps(frame, separators=(",", ":"), allow_nan=False)


def error_frame(code: str, message: str) -> str:
    return encode({"type": "error", "error": code, "message": message})


class LiveConsumer(AsyncWebsocketConsumer):
    """A consumer fed by the process hub (streamsite.hub), not by the channel layer.

    ``channel_layer_alias`` names no layer, so Channels does not give every
    connection its own layer channel and receive loop: broadcasts reach viewers
    through the hub, which costs one call per viewer instead of a Redis round
    trip and a dispatch.
    """

    channel_layer_alias = "none: live events come through streamsite.hub"
    metrics_kind = "other"
    _counted_open = False

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        metrics.Flusher.ensure_running()
        await super().websocket_connect(message)

    async def accept(self, subprotocol: str | None = None, headers=None) -> None:
        await super().accept(subprotocol, headers)
        self._counted_open = True
        metrics.inc("connections_open", kind=self.metrics_kind)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        if self._counted_open:
            self._counted_open = False
            metrics.inc("connections_open", -1, kind=self.metrics_kind)
        await super().websocket_disconnect(message)

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        metrics.inc("frames_in_total", kind=self.metrics_kind)
        await super().websocket_receive(message)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels 4.3 runs close_old_connections() through a thread hop before
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
        metrics.inc("frames_out_total", kind=self.metrics_kind)
        await self.base_send({"type": "websocket.send", "text": text})

    async def revoked(self) -> None:
        """The credential this connection came in with no longer holds (streamsite.control)."""
        metrics.inc("connections_revoked_total", kind=self.metrics_kind)
        await self.send_text(error_frame("revoked", "access was revoked"))
        await self.close(code=CLOSE_ACCESS_REVOKED)


class RefuseConsumer(AsyncWebsocketConsumer):
    """Refuses the handshake (HTTP 403): for paths that name no socket."""

    channel_layer_alias = LiveConsumer.channel_layer_alias

    async def connect(self) -> None:
        await self.close()
