"""``python -m streamsite.server [daphne options]``: Daphne with Streamsite's limits.

Every argument is Daphne's (``-b``, ``-p``, ``--fd``, ``-u``, ``--proxy-headers``
...) except the application, which is always Streamsite's (``streamsite.asgi``), and
``--processes N`` (or ``auto``: one per core), which serves the ``-b``/``-p`` port from
N such processes under a supervisor (``streamsite.processes``). On top:

- **Message size.** WebSocket messages and frames are limited to
  ``DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE`` (the largest document upload plus 1 MiB,
  so a slightly-too-big file still gets a readable error) unless given; a larger
  one is refused by the protocol layer (close 1009) before it is buffered. Consumers apply
  tighter limits of their own (feeds: 256 KiB; viewers: 4 KiB).
- **Slow readers.** ASGI has no backpressure: a viewer who stops reading makes
  the server queue every frame for it. Here each WebSocket has a fixed kernel
  send buffer (256 KiB as the kernel counts it) and checks, before a send, how
  much is still waiting in its transport; past
  ``WEBSOCKET_MAX_PENDING_BYTES`` the connection is closed with code 4008 and
  a reason. The viewer reconnects with ``since`` and catches up from the
  database; nobody else waits for it, and server memory stays bounded.
- **Fast writers.** Daphne hands every message it reads to the application's
  queue, however far behind the application is: a client pipelining uploads
  would fill memory with them. Here, once more than one largest message
  (``DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE``) waits unread by the application, the
  connection stops reading from its socket until half of that is taken: TCP
  then holds the client back.
- **Close codes.** Consumers close with the codes RFC 6455 gives servers
  (1008 policy, 1009 too big, 1011 internal error, 1013 try again later).
  Autobahn's ``sendClose`` takes only 1000 and 3000-4999 and raises on the
  others, which would crash the consumer, so those go out as close frames
  directly. A frame the protocol layer refuses (invalid UTF-8 in a text frame,
  a message over the limit) is answered with a close frame saying why (1007,
  1009) rather than a silent drop of the TCP connection; nothing of it is kept.
- **Access log.** Daphne's HTTP access log writes the whole URI; here it
  stops at the path, like its WebSocket lines: query strings carry share keys
  (``?key=``) and sometimes producer tokens. (The ``action_logger`` Daphne's
  command line gives the server is wrapped: ``without_query_strings``.)
- **Request bodies.** A body over its route's limit (``streamsite.bodylimits``)
  is refused before it is buffered: by ``Content-Length`` as soon as the
  headers are in, by a running count for a chunked body. The client gets a 413
  with a JSON error naming the limit, the connection is half-closed and
  dropped a moment later; nothing reaches the application. Twisted would
  otherwise spool the whole body to a temporary file, and Daphne would then put
  all of it in the application's queue at once.
- **Unsent response bytes.** HTTP scopes carry
  ``scope["extensions"]["streamsite.pending_bytes"]``: how much of the response
  waits unsent, so that an event stream can end a reader that stopped reading.
- **Prepared frames.** A broadcast frame is framed once per process
  (``streamsite.frames.websocket_frame``) and written to each socket as is,
  through ``scope["extensions"]["streamsite.write_frame"]``.

Seams. Daphne is extended only where it offers a way in:
``CommandLineInterface.server_class`` (StreamsiteServer), ``Server(action_logger=)``
(the access log), ``Server.create_application(protocol, scope)`` (the scope
extensions, from the protocol Daphne passes), ``Server(ready_callable=)`` (called
once the factories exist, before the reactor runs: the WebSocket factory gets
our protocol class, as autobahn documents, ``factory.protocol = ...``) and the
public Twisted transport API (``getHandle``, ``pauseProducing``,
``resumeProducing``, ``write``). What Daphne and Twisted offer no seam for is
read from their internals, each covered by tests/streamsite/test_server_contract.py,
which fails on an upgrade that moves it: the HTTP factory's module name in
``daphne.server`` (no factory seam), the channel's request target ``_path``
while headers end, and Twisted's write buffer (``dataBuffer``, ``offset``,
``_tempDataLen``: no public "bytes unsent"). Twisted's producer/consumer
(``registerProducer``) only says "over ``bufferSize``" and "drained", not how
much waits, so it cannot give the 4 MiB cut-off or the nothing-queued test of
the fast path; versions are pinned in the requirements.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
import pprint
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from autobahn import util as autobahn_util
from autobahn.twisted import websocket as autobahn_twisted_websocket
from autobahn.websocket import protocol as autobahn_protocol
from daphne import server as daphne_server
from daphne.cli import CommandLineInterface
from daphne.http_protocol import HTTPFactory, WebRequest
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet import reactor

from streamsite import metrics, processes
from streamsite.bodylimits import BodyLimit, body_limit, too_large_body
from streamsite.frames import Close

ActionLogger = Callable[[str, str, dict[str, Any]], None]
# Codes RFC 6455 (section 7.4.1) lets a server send, besides 1000 and 3000-4999.
PROTOCOL_CLOSE_CODES = frozenset({1001, 1002, 1003, 1007, 1008, 1009, 1011, 1012, 1013, 1014})
_FRAMES_OUT = metrics.key("frames_out_total", "broadcast")
_APPLICATION = "streamsite.asgi:application"
# A consumer's handler of incoming messages (BoundedWebSocketProtocol.take_messages):
# called with (text, None) or (None, bytes).
MessageHandler = Callable[[str | None, bytes | None], None]
log = logging.getLogger(__name__)


class _Lazy:
    """``function(value)`` as text, computed only if a log line is actually rendered."""

    __slots__ = ("function", "value")

    def __init__(self, function: Callable[[Any], str], value: object) -> None:
        self.function, self.value = function, value

    def __str__(self) -> str:  # str.format calls it too
        return self.function(self.value)


def _lazily(function: Callable[[Any], str]) -> Callable[[Any], _Lazy]:
    return functools.partial(_Lazy, function)


def _defer_autobahns_debug_formatting() -> None:
    # Why: autobahn builds the arguments of its debug log lines before the logger
    # can drop them: at every connection it pretty-prints its ~40 settings (12% of
    # the server's CPU in a reconnect storm), and at every read it styles the
    # method's and peer's names (``hltype``, ``hlval``: a fifth of the time Twisted
    # and autobahn take to read a publisher's frame). The modules' own names get
    # lazy twins (pinned by test_server_contract); autobahn passes them only to log calls.
    autobahn_protocol.pformat = _lazily(pprint.pformat)  # type: ignore[assignment]
    for module in (autobahn_protocol, autobahn_twisted_websocket):
        module.hltype = _lazily(autobahn_util.hltype)  # type: ignore[attr-defined]
        module.hlval = _lazily(autobahn_util.hlval)  # type: ignore[attr-defined]


_defer_autobahns_debug_formatting()

# Frames up to this size are unmasked by _SmallXorMasker; larger ones by autobahn's.
SMALL_FRAME_BYTES = 4096
_autobahns_xor_masker = autobahn_protocol.create_xor_masker


class _SmallXorMasker:
    """autobahn's masker interface (``pointer``, ``reset``, ``process``) for a small frame:
    the XOR as one big-integer operation.

    Why: autobahn's native (cffi) masker costs more to set up, per frame, than a
    small frame's XOR (2.8 µs against 0.7 µs for 20 bytes, measured here); a
    publisher's frame is tens of bytes. Past a few KiB the native one is faster,
    and keeps them. Installed as the module's own name (pinned by test_server_contract).
    """

    __slots__ = ("_mask", "_ptr")

    def __init__(self, mask: bytes) -> None:
        self._mask = bytes(mask)
        self._ptr = 0

    def pointer(self) -> int:
        return self._ptr

    def reset(self) -> None:
        self._ptr = 0

    def process(self, data: bytes) -> bytes:
        size = len(data)
        if not size:
            return b""
        shift = self._ptr % 4
        mask = self._mask[shift:] + self._mask[:shift] if shift else self._mask
        self._ptr += size
        key = int.from_bytes((mask * (size // 4 + 1))[:size], "little")
        return (int.from_bytes(data, "little") ^ key).to_bytes(size, "little")


def _create_xor_masker(mask: bytes, length: int | None = None) -> object:
    if length is not None and length <= SMALL_FRAME_BYTES:
        return _SmallXorMasker(mask)
    return _autobahns_xor_masker(mask, length)


autobahn_protocol.create_xor_masker = _create_xor_masker  # type: ignore[assignment]


def pending_bytes(transport: object) -> int:
    """Bytes accepted for sending but not yet written to the socket (Twisted TCP transport)."""
    buffered = getattr(transport, "dataBuffer", b"")
    offset = getattr(transport, "offset", 0)
    return len(buffered) - offset + getattr(transport, "_tempDataLen", 0)


def without_query_strings(logger: ActionLogger) -> ActionLogger:
    """Daphne's action logger, given paths without query strings (they carry share keys, tokens)."""

    def log_action(protocol: str, action: str, details: dict[str, Any]) -> None:
        path = details.get("path")
        if isinstance(path, str) and "?" in path:
            details = {**details, "path": path.split("?", 1)[0]}
        logger(protocol, action, details)

    return log_action


class BoundedWebSocketProtocol(WebSocketProtocol):
    """Daphne's WebSocket protocol, bounding what waits in either direction.

    Out: connections that fall too far behind are closed (4008). In: reading
    pauses while the application has too much unread.
    """

    max_pending_bytes = 4 * 1024 * 1024
    max_unread_bytes = 16 * 1024 * 1024
    # The kernel's send buffer of a socket grows by itself up to tcp_wmem's maximum
    # (4 MiB by default), none of it counted by pending_bytes: a viewer that stopped
    # reading hid that much there, for minutes, before the cutoff saw anything. A
    # fixed buffer (which the kernel doubles) bounds both; a live stream needs far
    # less in flight.
    send_buffer_bytes = 128 * 1024
    _too_slow = False
    _reading_paused = False
    _sock: socket.socket | None = None
    _take: MessageHandler | None = None

    def onConnect(self, request):  # noqa: N802 (autobahn's name)
        # Fail a connection with a close frame naming the reason (1007 invalid
        # UTF-8, 1009 message too big, 1002 protocol error) rather than by
        # dropping TCP, which a browser can only report as 1006. Autobahn discards
        # the rest of a refused message as it arrives, and drops the connection
        # if the client does not answer the close within a second.
        self.failByDrop = False
        # Sizes of the messages in the application's queue, oldest first.
        self._unread_sizes: deque[int] = deque()
        self._unread_total = 0
        return super().onConnect(request)

    def take_messages(self, handler: MessageHandler) -> None:
        """Hand every later incoming message to ``handler``, at once, instead of
        to the application's queue (``scope["extensions"]["streamsite.take_messages"]``).

        The publish socket's fast path: Daphne would put each message in the
        application's queue, wake the consumer's task and dispatch it through
        Channels; here the consumer's handler runs in the read itself, as
        Tornado's on_message does. The handler must not block; what it does
        with a message is its own (it answers in order, bounds what it holds).
        Everything else (connect, disconnect) still goes through the queue.
        """
        self._take = handler

    def onMessageEnd(self):  # noqa: N802 (autobahn's name)
        # autobahn's, less its "message" event for observers (``self.on("message")``),
        # which nobody registers here: it built a Deferred and a gather per message.
        # (Pinned by test_server_contract against autobahn's own.)
        if self._listeners or self.trackedTimings:
            super().onMessageEnd()
            return
        if not self.failedByMe:
            self._onMessage(b"".join(self.message_data), self.message_is_binary)
        self.message_data = None

    def onMessage(self, payload, isBinary):  # noqa: N802 (autobahn's name)
        take = self._take
        if take is not None:
            if self.muted:
                return
            self.last_ping = time.time()  # as Daphne's onMessage: the client is alive
            try:
                if isBinary:
                    take(None, payload)
                else:
                    take(payload.decode("utf8"), None)
            except Exception:
                # A bug in a handler must not take the reactor down with it.
                log.exception("websocket message handler failed; closing the connection")
                self._take = None
                self.sendCloseFrame(code=int(Close.UNAVAILABLE), isReply=False)
            return
        super().onMessage(payload, isBinary)
        if self.muted:
            return
        self._unread_sizes.append(len(payload))
        self._unread_total += len(payload)
        if not self._reading_paused and self._unread_bytes() > self.max_unread_bytes:
            self._reading_paused = True
            self.transport.pauseProducing()
            self._resume_when_read()

    def _unread_bytes(self) -> int:
        """Bytes of the messages the application has not taken from its queue yet."""
        # The queue is first in, first out: what it still holds are the newest.
        waiting = self.application_queue.qsize()
        while len(self._unread_sizes) > waiting:
            self._unread_total -= self._unread_sizes.popleft()
        return self._unread_total

    def _resume_when_read(self) -> None:
        if self.state == self.STATE_CLOSED:
            return
        if self._unread_bytes() <= self.max_unread_bytes // 2:
            self._reading_paused = False
            self.transport.resumeProducing()
        else:
            reactor.callLater(0.05, self._resume_when_read)  # type: ignore[arg-type]  # the stubs type `reactor` as the IReactorTime interface, declared without self

    def serverClose(self, code=None):  # noqa: N802 (Daphne's name)
        if code in PROTOCOL_CLOSE_CODES:
            self.sendCloseFrame(code=code, isReply=False)
        else:
            super().serverClose(code)

    def connectionMade(self):  # noqa: N802 (Twisted's name)
        super().connectionMade()
        # Daphne's factory calls its Server instance "server_class".
        limits = getattr(getattr(self.factory, "server_class", None), "limits", None)
        if limits is not None:
            self.max_pending_bytes, self.max_unread_bytes = limits
        # The socket, once (ITCPTransport.getHandle): the fast path writes to it.
        self._sock = sock = _socket_of(self.transport)
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
                code=int(Close.TOO_SLOW),
                reason=f"too slow: over {self.max_pending_bytes} bytes unsent; reconnect",
            )
            return False
        return True

    def onOpen(self):  # noqa: N802 (autobahn's name)
        super().onOpen()
        # autobahn keeps the whole handshake (raw request and response, parsed
        # headers and query) for the life of the socket; the ASGI scope already
        # has what the application needs. Dropping it saves ~2 KiB per viewer.
        self.http_request_data = self.http_response_data = None
        self.http_headers = {}
        self.http_request_params = {}
        request = getattr(self, "request", None)
        if request is not None:
            request.headers = {}
            request.params = {}

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
        sock = self._sock
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


class BodyLimitedRequest(WebRequest):
    """Daphne's HTTP request, refusing a body over its route's limit as it arrives."""

    # How long a refused connection keeps reading (and discarding) after the 413:
    # closing a socket with unread data sends a reset, and a client still sending
    # the body would then lose the answer before reading it (nginx's lingering close).
    linger_seconds = 2.0
    _limit: BodyLimit | None = None
    _received = 0
    _refused = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Twisted parses a POST's multipart or urlencoded body itself before the
        # application runs (Request.requestReceived), and answers a bare 400 with no
        # headers to one it cannot read, such as a multipart body without parts (found
        # by tests/e2e/test_openapi.py). Django parses bodies and Daphne never reads
        # Twisted's copy, which also cost a second parse of every upload on the event loop.
        super().__init__(*args, **{**kwargs, "parsePOSTFormSubmission": False})

    def gotLength(self, length):  # noqa: N802 (Twisted's name)
        # Twisted calls this once all headers are in, before any of the body. The
        # request line is not on the request yet; the channel holds its target in
        # _path until the body is complete (tests/streamsite/test_server_contract.py).
        target = getattr(self.channel, "_path", None)
        self._limit = body_limit(target.decode("latin-1") if target else "/")
        if length is not None and length > self._limit.max_bytes:
            super().gotLength(0)  # no temporary file for a body that is never kept
            self._refuse()
        else:
            super().gotLength(length)

    def handleContentChunk(self, data):  # noqa: N802 (Twisted's name)
        if self._refused:
            return
        self._received += len(data)
        if self._limit is not None and self._received > self._limit.max_bytes:
            self._refuse()
            return
        super().handleContentChunk(data)

    def process(self):
        if self._refused:
            return None  # the rest of a refused body arrived: nothing to run
        return super().process()

    def _refuse(self) -> None:
        assert self._limit is not None
        self._refused = True
        # allHeadersReceived answers "Expect: 100-continue" right after gotLength:
        # a client told 413 must not be invited to send the body too.
        self.requestHeaders.removeHeader(b"expect")
        body = too_large_body(self._limit)
        head = (
            "HTTP/1.1 413 Content Too Large\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        channel, transport = self.channel, self.transport
        # Twisted's own websocket upgrade swaps these on the channel the same way:
        # from now on whatever the client sends is dropped unparsed.
        channel.dataReceived = channel.rawDataReceived = _discard
        transport.write(head.encode() + body)
        lose_write = getattr(transport, "loseWriteConnection", None)
        (lose_write or transport.loseConnection)()
        reactor.callLater(self.linger_seconds, _abort, transport)  # type: ignore[arg-type]  # the stubs type `reactor` as the IReactorTime interface, declared without self
        metrics.inc("http_bodies_refused_total")
        with contextlib.suppress(Exception):
            peer = self.getClientAddress()
            self.server.log_action(
                "http",
                "complete",
                {
                    "path": (getattr(channel, "_path", b"") or b"").decode("latin-1"),
                    "status": 413,
                    "method": getattr(channel, "_command", b"").decode("latin-1"),
                    "client": f"{peer.host}:{peer.port}" if hasattr(peer, "host") else None,
                    "time_taken": 0,
                    "size": len(body),
                },
            )


def _discard(data: bytes) -> None:
    pass


def _abort(transport: Any) -> None:
    if getattr(transport, "connected", False):
        abort = getattr(transport, "abortConnection", transport.loseConnection)
        abort()


class BodyLimitedHTTPFactory(HTTPFactory):
    """Daphne's HTTP factory with BodyLimitedRequest as the request class."""

    def buildProtocol(self, addr):  # noqa: N802 (Twisted's name)
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = BodyLimitedRequest
        return protocol


class StreamsiteServer(daphne_server.Server):
    """Daphne's server with Streamsite's protocols, access log and scope extensions.

    Installed as ``CommandLineInterface.server_class``; every hook below is a
    parameter or method Daphne offers for it.
    """

    def __init__(
        self,
        *args: Any,
        action_logger: ActionLogger | None = None,
        ready_callable: Callable[[], None] | None = None,
        max_pending_bytes: int = BoundedWebSocketProtocol.max_pending_bytes,
        max_unread_bytes: int = BoundedWebSocketProtocol.max_unread_bytes,
        **kwargs: Any,
    ) -> None:
        self._then_ready = ready_callable
        self.limits = (max_pending_bytes, max_unread_bytes)
        super().__init__(
            *args,
            action_logger=without_query_strings(action_logger) if action_logger else None,
            ready_callable=self._factories_made,
            **kwargs,
        )

    def run(self):
        # Server.run builds self.http_factory from the name HTTPFactory in
        # daphne.server and starts listening in the same call, before any hook:
        # that name is the only seam (tests/streamsite/test_server_contract.py checks it).
        daphne_server.HTTPFactory = BodyLimitedHTTPFactory
        super().run()

    def _factories_made(self) -> None:
        """``ready_callable``: the factories exist, the reactor has not started."""
        self.ws_factory.protocol = BoundedWebSocketProtocol
        # Under --processes: the supervisor hears once this child accepts connections.
        reactor.callWhenRunning(processes.report_ready)
        if self._then_ready is not None:
            self._then_ready()

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> Any:
        """Daphne's hook for every connection's application: the scope extensions go in here.

        WebSockets on our protocol get ``streamsite.write_frame`` (the prepared-frame
        fast path) and ``streamsite.take_messages`` (incoming messages straight to
        a handler); HTTP requests get ``streamsite.pending_bytes`` (event streams end
        a reader that falls too far behind, streams/views.py).
        """
        if isinstance(protocol, BoundedWebSocketProtocol):
            extensions = scope.setdefault("extensions", {})
            extensions["streamsite.write_frame"] = protocol.write_prepared
            extensions["streamsite.take_messages"] = protocol.take_messages
        elif isinstance(protocol, WebRequest):
            extensions = scope.setdefault("extensions", {})
            extensions["streamsite.pending_bytes"] = functools.partial(
                _response_pending_bytes, protocol
            )
        return super().create_application(protocol, scope)


def _socket_of(transport: Any) -> socket.socket | None:
    """The transport's socket (ITCPTransport.getHandle), or None for any other transport."""
    get_handle = getattr(transport, "getHandle", None)
    handle = get_handle() if get_handle is not None else None
    return handle if isinstance(handle, socket.socket) else None


def _response_pending_bytes(request: WebRequest) -> int:
    """Bytes of an HTTP response written by the application but not yet sent to the client."""
    channel = request.channel
    return pending_bytes(channel.transport) if channel is not None else 0


def check_daphne_args(args: list[str]) -> None:
    """Exit 2 with Daphne's message unless ``args`` are options Daphne takes (for
    --processes, which gives each child an endpoint of its own: no -b or -p left)."""
    cli = CommandLineInterface()
    parsed = cli.parser.parse_args([*args, "--fd", "3", _APPLICATION])
    if parsed.host is not None or parsed.port is not None:
        cli.parser.error("--processes: give -b and -p in full (--bind, --port)")


# Container allocations between two collections of the youngest generation
# (Python's default: 700). See _tune_garbage_collector.
GC_YOUNGEST_THRESHOLD = 20_000


def _tune_garbage_collector() -> None:
    """Fewer, cheaper collections for a server holding thousands of connections.

    Why: every handshake allocates a few hundred containers (Twisted's and
    autobahn's protocol objects, Channels' consumer, tasks), so with Python's
    defaults the collector ran every few handshakes and kept re-scanning the
    objects of Django, Twisted and every open connection. Everything alive once
    Django is loaded lives for the whole process, so it is frozen out of
    collection (``gc.freeze``, made for this), and the youngest generation is
    collected every 20,000 allocations instead of 700. Measured on
    ``bench/run.py --only storm``: server CPU per handshake 2.80 ms, 2.62 with
    the freeze, 2.09 with both.

    This is safe only because nothing the server needs freed waits for the
    collector: a request's database connection is closed when the request ends
    (``_close_request_connections``), not left to its thread's garbage.
    """
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNGEST_THRESHOLD, middle, oldest)


def _close_request_connections(**_: object) -> None:
    """Close the database connections of an HTTP request's thread when it ends.

    Why: Django's ASGI handler runs each request's synchronous code in a thread
    of its own (``ThreadSensitiveContext``), which ends with the request; its
    connection, kept for ``DATABASE_CONN_MAX_AGE`` by Django's own
    ``close_old_connections``, is then reachable only through a reference cycle,
    so it stays open until the cyclic collector runs. With the collector tuned
    for thousands of sockets that took long enough for PostgreSQL to refuse
    clients ("too many clients"). No later request can reuse it anyway (the next
    one gets a new thread), so closing it costs nothing. Consumers' database
    thread lives for the whole process and keeps its connection: this receiver
    only hears ``request_finished``, which only HTTP requests send.
    """
    if threading.current_thread() is threading.main_thread():
        return  # the reactor's thread: no request ever runs its database code here
    from django.db import connections

    connections.close_all()


def _close_connections_with_requests() -> None:
    from django.core.signals import request_finished

    request_finished.connect(_close_request_connections, dispatch_uid="streamsite.server.close")


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if processes.requested(args):
        command = [sys.executable, "-m", "streamsite.server"]
        sys.exit(processes.main(args, command, check_daphne_args))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "streamsite.settings")
    from django.conf import settings

    if not any(a.startswith("--websocket-max-message-size") for a in args):
        args += ["--websocket-max-message-size", str(settings.DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE)]
    if not any(a.startswith("--websocket-max-frame-size") for a in args):
        args += ["--websocket-max-frame-size", str(settings.DAPHNE_WEBSOCKET_MAX_FRAME_SIZE)]
    if not any(a.startswith("--websocket_connect_timeout") for a in args):
        args += ["--websocket_connect_timeout", str(settings.WEBSOCKET_CONNECT_TIMEOUT_SECONDS)]
    args.append(_APPLICATION)
    # The upload parser's worker processes (documents/parsing.py) start now, not
    # when the first upload is waiting for them.
    from documents.parsing import warm

    warm()
    _close_connections_with_requests()
    _tune_garbage_collector()
    cli = CommandLineInterface()
    cli.server_class = functools.partial(
        StreamsiteServer,
        max_pending_bytes=settings.WEBSOCKET_MAX_PENDING_BYTES,
        max_unread_bytes=settings.DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE,
    )
    cli.run(args)


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy, so that there is one
    # BoundedWebSocketProtocol class (isinstance in create_application) whoever
    # else imports streamsite.server.
    from streamsite.server import main as imported_main

    imported_main()
