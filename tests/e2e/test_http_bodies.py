"""Request bodies over their route's limit are refused before they are buffered (real server).

The numbers (server RSS growth for a 100 MB body) are printed; run with -s to see them.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
import uuid

import psutil
import pytest
from django.conf import settings

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

HUNDRED_MB = 100 * 1024 * 1024
CHUNK = b"x" * 65536


def _connect(server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    return sock


def _head(path: str, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""]
    return "\r\n".join(lines).encode()


def _read_answer(sock: socket.socket) -> tuple[int, dict, bytes]:
    """Status, JSON body and the raw head of the one answer, read until the server closes."""
    data = b""
    while True:
        part = sock.recv(65536)
        if not part:
            break
        data += part
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body), head


def _rss(server) -> int:
    return psutil.Process(server.process.pid).memory_info().rss


def _publish_path() -> str:
    return f"/api/feeds/{uuid.uuid4()}/samples/"


def test_declared_100_mb_publish_is_refused_from_its_headers_alone(daphne):
    before = _rss(daphne)
    with _connect(daphne) as sock:
        sock.sendall(_head(_publish_path(), f"Content-Length: {HUNDRED_MB}"))
        status, body, head = _read_answer(sock)  # without sending one byte of the body
    grown = _rss(daphne) - before
    print(f"\n100 MB declared: 413 from the headers, server RSS +{grown / 1e6:.1f} MB")
    assert status == 413 and b"Connection: close" in head
    assert (body["type"], body["error"], body["limit"]) == (
        "error",
        "too_large",
        "PUBLISH_MAX_BYTES",
    )
    assert f"{settings.PUBLISH_MAX_BYTES:,}" in body["message"]


def test_client_that_sends_the_whole_body_anyway_still_reads_the_413(daphne):
    """A browser sends the body without waiting: the server reads and drops it, then closes."""
    before = _rss(daphne)
    sock = _connect(daphne)
    sock.sendall(_head(_publish_path(), f"Content-Length: {HUNDRED_MB}"))
    sent = 0

    def send_body() -> None:
        nonlocal sent
        try:
            while sent < HUNDRED_MB:
                sent += sock.send(CHUNK)
        except OSError:
            pass  # the server closed: expected

    sender = threading.Thread(target=send_body)
    sender.start()
    status, body, _ = _read_answer(sock)
    sender.join(30)
    sock.close()
    grown = _rss(daphne) - before
    print(f"\n100 MB sent anyway: {sent / 1e6:.1f} MB written, server RSS +{grown / 1e6:.1f} MB")
    assert status == 413 and body["limit"] == "PUBLISH_MAX_BYTES"
    assert grown < 20e6


def test_chunked_100_mb_is_refused_once_past_the_limit_and_not_kept(daphne):
    before = _rss(daphne)
    with _connect(daphne) as sock:
        sock.sendall(_head(_publish_path(), "Transfer-Encoding: chunked"))
        sent = 0
        try:
            while sent < HUNDRED_MB:
                sock.sendall(b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK))
                sent += len(CHUNK)
                if select.select([sock], [], [], 0)[0]:
                    break  # the answer is in
        except OSError:
            pass
        status, body, _ = _read_answer(sock)
    grown = _rss(daphne) - before
    print(f"\n100 MB chunked: refused after {sent / 1e6:.2f} MB sent, RSS +{grown / 1e6:.1f} MB")
    assert status == 413 and body["limit"] == "PUBLISH_MAX_BYTES"
    # What the socket buffers hold in flight (a few MB on loopback), not the whole body.
    assert sent < 16 * 1024 * 1024
    assert grown < 20e6


def test_sign_in_form_gets_the_small_default_limit(daphne):
    with _connect(daphne) as sock:
        too_big = settings.HTTP_MAX_BODY_BYTES + 1
        sock.sendall(_head("/accounts/login/", f"Content-Length: {too_big}"))
        status, body, _ = _read_answer(sock)
    assert status == 413 and body["limit"] == "HTTP_MAX_BODY_BYTES"


def test_document_upload_may_be_as_large_as_a_document(daphne):
    """Headers of a 2 MiB upload are not refused: the server waits for the body."""
    length = 2 * 1024 * 1024
    with _connect(daphne) as sock:
        sock.sendall(_head(f"/documents/{uuid.uuid4()}/upload/", f"Content-Length: {length}"))
        assert select.select([sock], [], [], 0.5)[0] == []  # no early answer
        sock.sendall(b"x" * length)
        started = time.monotonic()
        answer = sock.recv(65536)
    assert not answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert time.monotonic() - started < 10
