"""The ASGI-level body limit: other servers than streamsite.server (runserver, uvicorn) refuse too."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from django.conf import settings

from streamsite.asgi import application
from streamsite.bodylimits import body_limit

pytestmark = pytest.mark.django_db(transaction=True)


def _scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }


async def _call(scope: dict, chunks) -> tuple[list[dict], int]:
    sent: list[dict] = []
    read = 0

    async def receive():
        nonlocal read
        read += 1
        try:
            return next(chunks)
        except StopIteration:
            await asyncio.Event().wait()  # a client that stays connected
            raise

    async def send(message):
        sent.append(message)

    await application(scope, receive, send)
    return sent, read


async def test_declared_length_over_the_limit_is_refused_without_reading_the_body():
    path = f"/api/feeds/{uuid.uuid4()}/samples/"
    too_big = str(settings.PUBLISH_MAX_BYTES + 1).encode()
    sent, read = await _call(_scope(path, [(b"content-length", too_big)]), iter(()))
    assert read == 0
    assert sent[0]["status"] == 413
    body = json.loads(sent[1]["body"])
    assert (body["error"], body["limit"]) == ("too_large", "PUBLISH_MAX_BYTES")


async def test_body_without_length_is_counted_and_refused_past_the_limit():
    chunk = b"x" * 65536
    endless = ({"type": "http.request", "body": chunk, "more_body": True} for _ in range(10_000))
    sent, read = await _call(_scope("/accounts/login/", []), endless)
    assert read <= settings.HTTP_MAX_BODY_BYTES // len(chunk) + 2  # stopped near the limit
    statuses = [m["status"] for m in sent if m["type"] == "http.response.start"]
    assert statuses == [413]
    assert json.loads(sent[-1]["body"])["limit"] == "HTTP_MAX_BODY_BYTES"


async def test_body_within_the_limit_reaches_the_site():
    body = b"username=alice&password=x"
    chunks = iter([{"type": "http.request", "body": body, "more_body": False}])
    headers = [(b"content-length", str(len(body)).encode())]
    sent, _ = await _call(_scope("/accounts/login/", headers), chunks)
    assert sent[0]["status"] == 403  # Django's CSRF refusal: the request got through


def test_each_route_has_its_limit():
    document = f"/documents/{uuid.uuid4()}/upload/?next=x"
    assert body_limit(document).setting == "DOCUMENT_MAX_BYTES"
    assert body_limit(document).max_bytes == settings.DOCUMENT_MAX_BYTES + 1024 * 1024
    assert body_limit(f"/api/feeds/{uuid.uuid4()}/samples/").setting == "PUBLISH_MAX_BYTES"
    assert body_limit("/admin/tenants/tenant/add/").setting == "HTTP_MAX_BODY_BYTES"
    assert body_limit("/no/such/page").setting == "HTTP_MAX_BODY_BYTES"
