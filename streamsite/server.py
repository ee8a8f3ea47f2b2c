"""``python -m streamsite.server [daphne options]``: Daphne with Streamsite's limits.

Every argument is Daphne's (``-b``, ``-p``, ``--fd``, ``-u``, ``--proxy-headers``
...) except the application, which is always ``streamsite.asgi:application``. On top:

- **Message size.** WebSocket messages and frames are limited to the largest
  document upload plus a little (``DOCUMENT_MAX_BYTES`` + 64 KiB) unless given;
  a larger one is refused by the protocol layer with close code 1009 before it
  is buffered. Consumers apply tighter limits of their own (feeds: 256 KiB).
- **Slow readers.** ASGI has no backpressure: a viewer who stops reading makes
  the server queue every frame for it. Here each WebSocket checks, before a
  send, how much is still waiting in its transport; past
  ``WEBSOCKET_MAX_PENDING_BYTES`` the connection is closed with code 4008 and
  a reason. The viewer reconnects with ``since`` and catches up from the
  database; nobody else waits for it, and server memory stays bounded.
"""

from __future__ import annotations

import os
import sys

from daphne.cli import CommandLineInterface
from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol

CLOSE_TOO_SLOW = 4008
_APPLICATION = "streamsite.asgi:application"


def pending_bytes(transport: object) -> int:
    """Bytes accepted for sending but not yet written to the socket (Twisted TCP transport)."""
    buffered = getattr(transport, "dataBuffer", b"")
    offset = getattr(transport, "offset", 0)
    return len(buffered) - offset + getattr(transport, "_tempDataLen", 0)


class BoundedWebSocketProtocol(WebSocketProtocol):
    """Daphne's WebSocket protocol, closing connections that fall too far behind."""

    max_pending_bytes = 4 * 1024 * 1024
    _too_slow = False

    def serverSend(self, content, binary=False):  # noqa: N802 (Daphne's name)
        if self._too_slow:
            return
        if pending_bytes(self.transport) > self.max_pending_bytes:
            self._too_slow = True
            from streamsite import metrics

            metrics.inc("viewers_dropped_total")
            self.sendClose(
                code=CLOSE_TOO_SLOW,
                reason=f"too slow: over {self.max_pending_bytes} bytes unsent; reconnect",
            )
            return
        super().serverSend(content, binary)


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "streamsite.settings")
    from django.conf import settings

    args = list(sys.argv[1:] if argv is None else argv)
    limit = str(settings.DOCUMENT_MAX_BYTES + 64 * 1024)
    if not any(a.startswith("--websocket-max-message-size") for a in args):
        args += ["--websocket-max-message-size", limit]
    if not any(a.startswith("--websocket-max-frame-size") for a in args):
        args += ["--websocket-max-frame-size", limit]
    args.append(_APPLICATION)
    BoundedWebSocketProtocol.max_pending_bytes = settings.WEBSOCKET_MAX_PENDING_BYTES
    WebSocketFactory.protocol = BoundedWebSocketProtocol
    CommandLineInterface().run(args)


if __name__ == "__main__":
    main()
