"""``python -m streamsite.server [daphne options]``: Daphne with Streamsite's limits.

Every argument is Daphne's (``-b``, ``-p``, ``--fd``, ``-u``, ``--proxy-headers``
...) except the application, which is always Streamsite's (``streamsite.asgi``). On top:

- **Message size.** WebSocket messages and frames are limited to
  ``DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE`` (the largest document upload plus 1 MiB,
  so a slightly-too-big file still gets a readable error) unless given; a larger
  one is dropped by the protocol layer before it is buffered. Consumers apply
  tighter limits of their own (feeds: 256 KiB; viewers: 4 KiB).
- **Slow readers.** ASGI has no backpressure: a viewer who stops reading makes
  the server queue every frame for it. Here each WebSocket has a fixed kernel
  send buffer (256 KiB as the kernel counts it) and checks, before a send, how
  much is still waiting in its transport; past
  ``WEBSOCKET_MAX_PENDING_BYTES`` the connection is closed with code 4008 and
  a reason. The viewer reconnects with ``since`` and catches up from the
  database; nobody else waits for it, and server memory stays bounded.
- **Prepared frames.** A broadcast frame is framed once per process
  (``streamsite.frames.websocket_frame``) and written to each socket as is,
  through ``scope["extensions"]["streamsite.write_frame"]`` (PreparedFramesApp).
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import sys
from typing import Any

from daphne.cli import CommandLineInterface
from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol

from streamsite import metrics

CLOSE_TOO_SLOW = 4008
_FRAMES_OUT = metrics.key("frames_out_total", "broadcast")
_APPLICATION = "streamsite.server:application"


def pending_bytes(transport: object) -> int:
    """Bytes accepted for sending but not yet written to the socket (Twisted TCP transport)."""
    buffered = getattr(transport, "dataBuffer", b"")
    offset = getattr(transport, "offset", 0)
    return len(buffered) - offset + getattr(transport, "_tempDataLen", 0)


class BoundedWebSocketProtocol(WebSocketProtocol):
    """Daphne's WebSocket protocol, closing connections that fall too far behind."""

    max_pending_bytes = 4 * 1024 * 1024
    # The kernel's send buffer of a socket grows by itself up to tcp_wmem's maximum
    # (4 MiB by default), none of it counted by pending_bytes: a viewer that stopped
    # reading hid that much there, for minutes, before the cutoff saw anything. A
    # fixed buffer (which the kernel doubles) bounds both; a live stream needs far
    # less in flight.
    send_buffer_bytes = 128 * 1024
    _too_slow = False

    def connectionMade(self):  # noqa: N802 (Twisted's name)
        super().connectionMade()
        sock = getattr(self.transport, "socket", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer_bytes)

    def _keeping_up(self) -> bool:
        if self._too_slow:
            return False
        if pending_bytes(self.transport) > self.max_pending_bytes:
            self._too_slow = True
            metrics.inc("viewers_dropped_total")
            self.sendClose(
                code=CLOSE_TOO_SLOW,
                reason=f"too slow: over {self.max_pending_bytes} bytes unsent; reconnect",
            )
            return False
        return True

    def serverSend(self, content, binary=False):  # noqa: N802 (Daphne's name)
        if self._keeping_up():
            super().serverSend(content, binary)

    def write_prepared(self, wire: bytes) -> bool:
        """Write a frame built by streamsite.frames.websocket_frame; False if not sent.

        The broadcast fast path: no re-encoding, no re-framing, no coroutine.
        """
        if self.state != self.STATE_OPEN or not self._keeping_up():
            return False
        transport = self.transport
        sock = getattr(transport, "socket", None)
        sent = 0
        if sock is not None and pending_bytes(transport) == 0 and not transport.disconnecting:
            # Nothing queued: write now, as Tornado does, instead of Twisted's
            # buffer -> epoll register -> send -> unregister (three syscalls a frame).
            try:
                sent = sock.send(wire)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                sent = 0  # the transport notices the broken socket on its own write
        if sent < len(wire):
            transport.write(wire[sent:] if sent else wire)
        metrics.bump(_FRAMES_OUT)
        return True


class PreparedFramesApp:
    """Offers consumers ``scope["extensions"]["streamsite.write_frame"]`` on our protocol.

    Daphne gives the application ``send = partial(Server.handle_reply, protocol)``;
    when that protocol is ours, the extension is its ``write_prepared``. Anything
    else (another server, the test communicator) gets no extension and consumers
    send through ASGI as usual.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and isinstance(send, functools.partial):
            protocol = send.args[0] if send.args else None
            if isinstance(protocol, BoundedWebSocketProtocol):
                extensions = dict(scope.get("extensions") or {})
                extensions["streamsite.write_frame"] = protocol.write_prepared
                scope = dict(scope, extensions=extensions)
        return await self.app(scope, receive, send)


def _load_application() -> PreparedFramesApp:
    from streamsite.asgi import application as streamsite_application

    return PreparedFramesApp(streamsite_application)


def __getattr__(name: str) -> Any:
    # Daphne imports "streamsite.server:application"; built on first use, after settings.
    if name == "application":
        return _load_application()
    raise AttributeError(name)


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "streamsite.settings")
    from django.conf import settings

    args = list(sys.argv[1:] if argv is None else argv)
    if not any(a.startswith("--websocket-max-message-size") for a in args):
        args += ["--websocket-max-message-size", str(settings.DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE)]
    if not any(a.startswith("--websocket-max-frame-size") for a in args):
        args += ["--websocket-max-frame-size", str(settings.DAPHNE_WEBSOCKET_MAX_FRAME_SIZE)]
    args.append(_APPLICATION)
    BoundedWebSocketProtocol.max_pending_bytes = settings.WEBSOCKET_MAX_PENDING_BYTES
    WebSocketFactory.protocol = BoundedWebSocketProtocol
    CommandLineInterface().run(args)


if __name__ == "__main__":
    # Run the importable module's main, not this __main__ copy: Daphne imports
    # "streamsite.server:application", and a second copy of the module would
    # install its own BoundedWebSocketProtocol, which PreparedFramesApp (of the
    # imported copy) does not recognise: consumers would never get write_frame.
    from streamsite.server import main as _main

    _main()
