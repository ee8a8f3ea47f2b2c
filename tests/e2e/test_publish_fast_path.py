"""The publish socket on the real server, where frames reach the consumer in the read
itself (streamsite.server's take_messages): frames that arrive together, in one TCP
segment, are stored and answered in order, and the socket's limits still hold."""

import base64
import json
import os
import socket
import time

import pytest

from streams.models import Sample
from streams.services import producer_token_rotate

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _client_frame(text: str) -> bytes:
    """A masked text frame, as a client must send it (RFC 6455, 5.3)."""
    payload = text.encode()
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        header = bytes([0x81, 0x80 | size])
    elif size < 65536:
        header = bytes([0x81, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        header = bytes([0x81, 0x80 | 127]) + size.to_bytes(8, "big")
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class _Wire:
    """A WebSocket client on a plain socket: after the handshake, every frame in one write."""

    def __init__(self, port: int, path: str, token: str, frames: list[str]) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
        ).encode()
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.sock.sendall(request)
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._recv()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        self.status = head.split(b"\r\n", 1)[0]
        # A client waits for the 101 before it sends (RFC 6455, 4.1); Daphne drops
        # what arrives with the request.
        self.sock.sendall(b"".join(_client_frame(text) for text in frames))

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the server")
        return chunk

    def _take(self, count: int) -> bytes:
        while len(self.buffer) < count:
            self.buffer += self._recv()
        taken, self.buffer = self.buffer[:count], self.buffer[count:]
        return taken

    def frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the server's next frame (servers do not mask)."""
        first, second = self._take(2)
        size = second & 0x7F
        if size == 126:
            size = int.from_bytes(self._take(2), "big")
        elif size == 127:
            size = int.from_bytes(self._take(8), "big")
        return first & 0x0F, self._take(size)

    def answers(self, count: int) -> list[dict]:
        got = []
        while len(got) < count:
            opcode, payload = self.frame()
            if opcode == 0x1:
                got.append(json.loads(payload))
            elif opcode == 0x8:
                got.append({"close": int.from_bytes(payload[:2], "big")})
        return got

    def close(self) -> None:
        self.sock.close()


def _stored(feed) -> list[tuple[int, float]]:
    return list(Sample.objects.filter(feed=feed).order_by("seq").values_list("seq", "value"))


def test_frames_sent_together_are_stored_and_answered_in_order(daphne, acme_feed):
    feed = acme_feed.feed
    values = [i % 2 for i in range(40)]
    frames = [json.dumps({"value": v}) for v in values[:20]]
    frames.append("not json")  # answered in its place, between the acks
    frames += [json.dumps({"value": v}) for v in values[20:]]
    wire = _Wire(daphne.port, f"/ws/feeds/{feed.uuid}/publish/", acme_feed.token, frames)
    try:
        assert wire.status.startswith(b"HTTP/1.1 101")
        answers = wire.answers(41)
    finally:
        wire.close()
    assert [a.get("seq") for a in answers[:20]] == list(range(1, 21))
    assert answers[20]["type"] == "error" and answers[20]["error"] == "bad_json"
    assert [a.get("seq") for a in answers[21:]] == list(range(21, 41))
    assert _stored(feed) == list(enumerate(values, start=1))


def test_a_frame_over_the_limit_is_refused_and_nothing_after_it_is_stored(
    daphne, acme_feed, settings
):
    feed = acme_feed.feed
    too_big = json.dumps({"values": [1] * (settings.PUBLISH_MAX_BYTES // 2)})
    frames = [json.dumps({"value": 1}), too_big, json.dumps({"value": 0})]
    wire = _Wire(daphne.port, f"/ws/feeds/{feed.uuid}/publish/", acme_feed.token, frames)
    try:
        answers = wire.answers(2)
    finally:
        wire.close()
    # The refusal is answered at once (the first frame's ack, still being written,
    # never comes: the client resends what was not acked, docs/PROTOCOL.md).
    assert answers[0]["type"] == "error" and answers[0]["error"] == "too_large"
    assert answers[1] == {"close": 1009}
    time.sleep(0.5)  # the first frame's write, if it was handed over, has committed
    assert _stored(feed) in ([], [(1, 1.0)])


def test_once_revoked_a_publisher_stores_nothing_more(daphne, acme_feed):
    feed = acme_feed.feed
    wire = _Wire(daphne.port, f"/ws/feeds/{feed.uuid}/publish/", acme_feed.token, ["1"])
    try:
        assert wire.answers(1) == [{"type": "ack", "seq": 1}]
        producer_token_rotate(producer=acme_feed.producer)
        revoked = wire.answers(1)
        # The client has not seen the close yet and keeps publishing.
        wire.sock.sendall(b"".join(_client_frame("0") for _ in range(5)))
        rest = wire.answers(1)
    finally:
        wire.close()
    assert revoked[0]["type"] == "error" and revoked[0]["error"] == "revoked"
    assert rest == [{"close": 4403}]
    time.sleep(0.5)
    assert _stored(feed) == [(1, 1.0)]
