"""What streamsite.server relies on inside Daphne and Twisted: fails loudly if an upgrade moves it.

The HTTP channel is driven in-process (Twisted's StringTransport), the way the
real server drives it, through the factory streamsite.server installs.
"""

from __future__ import annotations

import inspect
import json
import uuid

from daphne import server as daphne_server
from django.conf import settings
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.web import http

from streamsite.server import BodyLimitedHTTPFactory, BodyLimitedRequest


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

    def protocol_connected(self, protocol) -> None:
        self.connected.append(protocol)

    def protocol_disconnected(self, protocol) -> None:
        pass

    def log_action(self, protocol, action, details) -> None:
        self.logged.append(details)

    def create_application(self, protocol, scope):
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
