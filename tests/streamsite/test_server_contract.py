"""What streamsite.server relies on inside Daphne and Twisted: fails loudly if an upgrade moves it.

The HTTP channel is driven in-process (Twisted's StringTransport), the way the
real server drives it, through the factory streamsite.server installs.
"""

from __future__ import annotations

import inspect
import json
import pprint
import random
import re
import socket
import uuid

from autobahn import util as autobahn_util
from autobahn.twisted import websocket as autobahn_twisted_websocket
from autobahn.websocket import protocol as autobahn_protocol
from daphne import http_protocol, ws_protocol
from daphne import server as daphne_server
from daphne.cli import CommandLineInterface
from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
from django.conf import settings
from twisted.internet import tcp
from twisted.internet.abstract import FileDescriptor
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.web import http

from streamsite import server as server_module
from streamsite.server import (
    BodyLimitedHTTPFactory,
    BodyLimitedRequest,
    BoundedWebSocketProtocol,
    StreamsiteServer,
    pending_bytes,
    without_query_strings,
)


class _StubServer:
    """What Daphne's WebRequest asks of its server before the body is complete."""

    server_name = "daphne"
    proxy_forwarded_address_header = None
    root_path = ""
    request_buffer_size = 8192

    def __init__(self) -> None:
        self.connected: list[object] = []
        self.applications: list[dict] = []
        self.logged: list[dict] = []
        self.created_for: list[object] = []

    def protocol_connected(self, protocol) -> None:
        self.connected.append(protocol)

    def protocol_disconnected(self, protocol) -> None:
        pass

    def log_action(self, protocol, action, details) -> None:
        self.logged.append(details)

    def create_application(self, protocol, scope):
        self.created_for.append(protocol)
        self.applications.append(scope)
        return None  # "abandoned": the test only needs to know it was reached


def _channel():
    server = _StubServer()
    factory = BodyLimitedHTTPFactory(server)
    protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5000))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5000))
    protocol.makeConnection(transport)
    return server, protocol, transport


def _head(path: str, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""]
    return "\r\n".join(lines).encode()


def _publish_path() -> str:
    return f"/api/feeds/{uuid.uuid4()}/samples/"


def _answer(transport: StringTransport) -> tuple[bytes, dict]:
    head, _, body = transport.value().partition(b"\r\n\r\n")
    return head, json.loads(body)


def test_daphne_builds_its_http_factory_from_the_module_name_we_replace():
    # StreamsiteServer.run swaps daphne.server.HTTPFactory before Server.run reads it.
    assert "HTTPFactory" in daphne_server.Server.run.__code__.co_names
    assert daphne_server.HTTPFactory.__module__ in ("daphne.http_protocol", "streamsite.server")


def test_requests_are_our_class_and_see_the_request_target_while_headers_end():
    server, protocol, transport = _channel()
    protocol.dataReceived(_head("/accounts/login/", "Content-Length: 3") + b"a=b")
    assert isinstance(server.connected[0], BodyLimitedRequest)
    # The body was complete, so Daphne went on to create the application.
    assert server.applications and server.applications[0]["path"] == "/accounts/login/"


def test_form_bodies_reach_the_application_unparsed_by_twisted():
    # BodyLimitedRequest turns off Twisted's own parse of POST form bodies, which
    # answered a multipart body without parts with a bare 400 before Django saw it.
    assert "parsePOSTFormSubmission" in inspect.signature(http.Request).parameters
    server, protocol, transport = _channel()
    body = b"--b--\r\n"
    protocol.dataReceived(
        _head(
            f"/documents/{uuid.uuid4()}/upload/",
            "Content-Type: multipart/form-data; boundary=b",
            f"Content-Length: {len(body)}",
        )
        + body
    )
    assert transport.value() == b""  # nothing answered by Twisted
    assert server.applications and server.applications[0]["method"] == "POST"


def test_declared_length_over_the_route_limit_is_answered_413_before_the_body():
    server, protocol, transport = _channel()
    too_big = settings.PUBLISH_MAX_BYTES + 1
    protocol.dataReceived(_head(_publish_path(), f"Content-Length: {too_big}"))
    head, body = _answer(transport)
    assert head.startswith(b"HTTP/1.1 413 ") and b"Connection: close" in head
    assert (body["error"], body["limit"]) == ("too_large", "PUBLISH_MAX_BYTES")
    protocol.dataReceived(b"x" * too_big)
    assert server.applications == []  # the application never ran
    assert server.logged[0]["status"] == 413


def test_the_same_length_on_the_upload_route_is_let_through():
    server, protocol, transport = _channel()
    length = settings.PUBLISH_MAX_BYTES + 1
    path = f"/documents/{uuid.uuid4()}/upload/"
    protocol.dataReceived(_head(path, f"Content-Length: {length}") + b"x" * length)
    assert transport.value() == b""
    assert server.applications and server.applications[0]["path"] == path


def test_a_refused_expect_100_continue_gets_no_invitation_to_send():
    server, protocol, transport = _channel()
    too_big = settings.HTTP_MAX_BODY_BYTES + 1
    protocol.dataReceived(
        _head("/accounts/login/", f"Content-Length: {too_big}", "Expect: 100-continue")
    )
    assert b"100 Continue" not in transport.value()
    head, body = _answer(transport)
    assert head.startswith(b"HTTP/1.1 413 ") and body["limit"] == "HTTP_MAX_BODY_BYTES"


def test_chunked_body_is_counted_and_refused_once_with_nothing_parsed_after():
    server, protocol, transport = _channel()
    chunk = b"x" * 65536
    protocol.dataReceived(_head(_publish_path(), "Transfer-Encoding: chunked"))
    for _ in range(settings.PUBLISH_MAX_BYTES // len(chunk) + 2):
        protocol.dataReceived(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    protocol.dataReceived(b"not a chunk at all\r\n\r\nGET / HTTP/1.1\r\n\r\n")
    head, body = _answer(transport)
    assert transport.value().count(b"HTTP/1.1") == 1  # no 400 for the garbage, no 2nd answer
    assert body["limit"] == "PUBLISH_MAX_BYTES"
    assert server.applications == []


# -- Daphne's seams that StreamsiteServer plugs into -------------------------------


def test_daphne_server_takes_an_action_logger_and_a_ready_callable():
    parameters = inspect.signature(daphne_server.Server.__init__).parameters
    assert {"action_logger", "ready_callable", "application", "endpoints"} <= set(parameters)
    # The command line builds its server through server_class, passing the access log.
    cli_source = inspect.getsource(CommandLineInterface.run)
    assert "self.server_class(" in cli_source and "action_logger=" in cli_source


def test_ready_callable_runs_after_the_factories_exist_and_before_the_reactor():
    # StreamsiteServer._factories_made installs our WebSocket protocol on ws_factory.
    source = inspect.getsource(daphne_server.Server.run)
    made = source.index("self.ws_factory = WebSocketFactory(")
    ready = source.index("self.ready_callable()")
    assert made < ready < source.index("reactor.run(")


def test_ready_hook_gives_the_websocket_factory_our_protocol_and_limits():
    server = StreamsiteServer(
        application=None,
        endpoints=["tcp:port=0"],
        max_pending_bytes=1234,
        max_unread_bytes=5678,
        ready_callable=lambda: ready.append(True),
    )
    ready: list[bool] = []
    server.ws_factory = WebSocketFactory(server, server="Daphne")
    server._factories_made()
    assert ready == [True]
    protocol = server.ws_factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5000))
    assert isinstance(protocol, BoundedWebSocketProtocol)
    # Daphne's factory names its Server instance server_class; the protocol reads limits there.
    assert server.ws_factory.server_class is server
    protocol.makeConnection(StringTransport())
    assert (protocol.max_pending_bytes, protocol.max_unread_bytes) == (1234, 5678)


def test_access_log_wrapper_drops_query_strings_only():
    logged: list[dict] = []
    log = without_query_strings(lambda protocol, action, details: logged.append(details))
    log("http", "complete", {"path": "/feeds/x/?key=SECRET", "status": 200})
    log("websocket", "connected", {"path": "/ws/feeds/x/"})
    assert [d["path"] for d in logged] == ["/feeds/x/", "/ws/feeds/x/"]
    assert logged[0]["status"] == 200


def test_create_application_is_called_with_the_protocol_and_scope():
    # StreamsiteServer.create_application adds the scope extensions from the protocol.
    assert list(inspect.signature(daphne_server.Server.create_application).parameters) == [
        "self",
        "protocol",
        "scope",
    ]
    for module in (ws_protocol, http_protocol):
        # Both protocols hand create_application themselves: maybeDeferred(it, self, scope).
        assert re.search(r"self\.server\.create_application,\s*self,", inspect.getsource(module))
    server, protocol, transport = _channel()
    protocol.dataReceived(_head("/accounts/login/", "Content-Length: 3") + b"a=b")
    assert isinstance(server.created_for[0], BodyLimitedRequest)


# -- Twisted internals read without a seam -------------------------------------------


class _Reactor:
    def addWriter(self, writer):  # noqa: N802 (Twisted's name)
        pass

    def removeWriter(self, writer):  # noqa: N802 (Twisted's name)
        pass

    def removeReader(self, reader):  # noqa: N802 (Twisted's name)
        pass


class _Descriptor(FileDescriptor):
    """Twisted's write buffer with a socket that takes ``accept`` bytes per write."""

    accept = 0

    def writeSomeData(self, data):  # noqa: N802 (Twisted's name)
        return min(len(data), self.accept)


def test_pending_bytes_reads_twisteds_write_buffer_exactly():
    descriptor = _Descriptor(reactor=_Reactor())
    descriptor.connected = True
    assert pending_bytes(descriptor) == 0
    descriptor.write(b"x" * 1000)
    descriptor.write(b"y" * 500)  # waits in _tempData until the next doWrite
    assert pending_bytes(descriptor) == 1500
    descriptor.accept = 600
    descriptor.doWrite()  # 600 sent: the rest is dataBuffer from offset on
    assert pending_bytes(descriptor) == 900
    descriptor.accept = 10_000
    descriptor.doWrite()
    assert pending_bytes(descriptor) == 0
    assert not descriptor.disconnecting  # write_prepared checks it before a raw send
    descriptor.write(b"z")
    descriptor.loseConnection()  # with data still queued: disconnecting until it is written
    assert descriptor.disconnecting


def test_tcp_transports_hand_out_their_socket_and_pause_reading():
    # getHandle: the fast path's raw send; pause/resumeProducing: the fast-writer brake.
    for name in ("getHandle", "pauseProducing", "resumeProducing", "write", "loseConnection"):
        assert callable(getattr(tcp.Connection, name))


# -- autobahn and Daphne protocol attributes BoundedWebSocketProtocol uses -------------


def test_websocket_protocol_attributes_we_rely_on_are_there():
    assert {"STATE_OPEN", "STATE_CLOSED"} <= set(dir(WebSocketProtocol))
    # failByDrop is one of autobahn's per-connection options (onConnect sets it False).
    assert "failByDrop" in autobahn_protocol.WebSocketProtocol.CONFIG_ATTRS_COMMON
    assert list(inspect.signature(WebSocketProtocol.sendCloseFrame).parameters)[:4] == [
        "self",
        "code",
        "reasonUtf8",
        "isReply",
    ]
    protocol_source = inspect.getsource(WebSocketProtocol)
    for attribute in ("self.muted", "self.application_queue", "def serverSend", "def serverClose"):
        assert attribute in protocol_source, attribute
    autobahn_source = inspect.getsource(autobahn_protocol.WebSocketServerProtocol)
    autobahn_source += inspect.getsource(autobahn_protocol.WebSocketProtocol)
    for attribute in ("http_request_data", "http_response_data", "http_headers"):
        assert f"self.{attribute}" in autobahn_source, attribute


def test_autobahns_debug_log_arguments_are_computed_only_when_logged():
    # autobahn pretty-prints its settings for a debug line at every connection
    # (12% of a reconnect storm's CPU) and styles names for one at every read;
    # streamsite.server makes pformat, hltype and hlval lazy in its modules.
    source = inspect.getsource(autobahn_protocol.WebSocketProtocol._connectionMade)
    assert "pformat(configAttrLog)" in source
    settings_log = [("openHandshakeTimeout", 30, "WebSocketServerFactory")]
    lazy = autobahn_protocol.pformat(settings_log)
    assert isinstance(lazy, server_module._Lazy)
    assert f"{lazy}" == pprint.pformat(settings_log)
    read = inspect.getsource(autobahn_twisted_websocket.WebSocketAdapterProtocol.dataReceived)
    assert "func=hltype(self.dataReceived)" in read and "peer=hlval(self.peer)" in read
    for module in (autobahn_protocol, autobahn_twisted_websocket):
        for name in ("hltype", "hlval"):
            lazy = getattr(module, name)(len)
            assert isinstance(lazy, server_module._Lazy), (module.__name__, name)
            assert f"{lazy}" == getattr(autobahn_util, name)(len)
        # Only ever a keyword argument (of log calls): a lazy value can't be added to a string.
        source = inspect.getsource(module)
        uses = list(re.finditer(r"\b(hltype|hlval)\(", source))
        assert uses, module.__name__
        for use in uses:
            assert source[: use.start()].endswith("="), source[use.start() - 60 : use.end()]


def test_small_frames_are_unmasked_as_autobahn_would():
    # streamsite.server replaces autobahn's create_xor_masker (the module's own name)
    # for frames up to SMALL_FRAME_BYTES; larger frames keep autobahn's own.
    source = inspect.getsource(autobahn_protocol.WebSocketProtocol.processData)
    assert "self.current_frame_masker = create_xor_masker(" in source
    assert autobahn_protocol.create_xor_masker is server_module._create_xor_masker
    own = server_module._autobahns_xor_masker
    rng = random.Random(7)
    for size in (1, 3, 4, 5, 20, 127, 128, 1000, 4096, 4097, 70_000):
        mask, data = rng.randbytes(4), rng.randbytes(size)
        ours = autobahn_protocol.create_xor_masker(mask, size)
        assert isinstance(ours, server_module._SmallXorMasker) == (
            size <= server_module.SMALL_FRAME_BYTES
        )
        # autobahn feeds a frame's payload in pieces as it arrives: the mask carries on.
        cuts = sorted(rng.sample(range(1, size), min(3, size - 1))) if size > 1 else []
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, size], strict=True)]
        assert b"".join(ours.process(piece) for piece in pieces) == own(mask, size).process(data)
        assert ours.pointer() == size
        ours.reset()
        assert ours.pointer() == 0 and ours.process(data) == own(mask, size).process(data)


def test_a_message_is_handed_over_as_autobahns_on_message_end_does():
    # BoundedWebSocketProtocol.onMessageEnd is autobahn's without the "message"
    # event (a Deferred per message for observers nobody registers): same steps.
    source = inspect.getsource(autobahn_protocol.WebSocketProtocol.onMessageEnd)
    for step in (
        "if not self.failedByMe:",
        'payload = b"".join(self.message_data)',
        "self._onMessage(payload, self.message_is_binary)",
        'self.fire("message"',
        "self.message_data = None",
    ):
        assert step in source, step
    assert BoundedWebSocketProtocol._listeners is None  # no observers unless registered


def test_daphnes_fd_option_adopts_an_inherited_ipv4_listening_socket():
    """--processes hands each child the supervisor's socket as ``--fd N``: Daphne turns
    it into ``fd:fileno=N``, parsed by the Twisted plugin Daphne ships, which adopts
    every descriptor as AF_INET (its ``domain`` is not converted: IPv4 only)."""
    from daphne.endpoints import build_endpoint_description_strings
    from twisted.internet import reactor
    from twisted.internet.endpoints import AdoptedStreamServerEndpoint, serverFromString

    (description,) = build_endpoint_description_strings(file_descriptor=7)
    assert description == "fd:fileno=7"
    endpoint = serverFromString(reactor, description)
    assert isinstance(endpoint, AdoptedStreamServerEndpoint)
    assert (endpoint.fileno, endpoint.addressFamily) == (7, socket.AF_INET)
