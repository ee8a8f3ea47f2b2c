"""Producer tokens and share keys: one refusal for every bad token, and never in a log line.

A client learns nothing from the refusal (missing, forged, revoked, rotated
away, disabled, another feed's: the same 403), and neither tokens nor share
keys, good or bad, reach the server's output, which is usually shipped to a
log store that many more people can read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import urllib.error
import urllib.request
import uuid

import pytest
import websockets
from channels.db import database_sync_to_async
from django.test import Client

from streams.models import ProducerKind
from streams.services import (
    producer_create,
    producer_set_enabled,
    producer_token_revoke,
    producer_token_rotate,
)
from tests.conftest import Daphne
from tests.streams.wsclient import communicator, receive, refused

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def bad_tokens(acme_feed, globex_feed) -> dict[str, str | None]:
    """Every way a token for acme's feed can be wrong, by name (None: no token at all)."""
    feed = acme_feed.feed
    revoked, revoked_token = producer_create(feed=feed, kind=ProducerKind.EXTERNAL, name="r")
    producer_token_revoke(producer=revoked)
    rotated, rotated_away = producer_create(feed=feed, kind=ProducerKind.EXTERNAL, name="o")
    producer_token_rotate(producer=rotated)
    disabled, disabled_token = producer_create(feed=feed, kind=ProducerKind.EXTERNAL, name="d")
    producer_set_enabled(producer=disabled, enabled=False)
    return {
        "missing": None,
        "empty": "",
        "forged": "sst_" + secrets.token_urlsafe(32),
        "garbage": "not-a-token-at-all",
        "truncated": acme_feed.token[:-1],
        "revoked": revoked_token,
        "rotated away": rotated_away,
        "disabled producer": disabled_token,
        "another feed's": globex_feed.token,
    }


def publish_url(server: Daphne, feed_uuid, token: str | None = None) -> str:
    query = f"?token={token}" if token is not None else ""
    return f"{server.ws}/ws/feeds/{feed_uuid}/publish/{query}"


def bearer(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


async def handshake(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """The handshake's HTTP status and body (101 and nothing when the socket opened)."""
    try:
        async with websockets.connect(url, additional_headers=headers, open_timeout=5):
            return 101, b""
    except websockets.InvalidStatus as exc:
        return exc.response.status_code, bytes(exc.response.body)


def http(url: str, *, body: bytes | None = None, headers: dict[str, str] | None = None):
    """Status and body of a plain HTTP request (first 4 KiB: streams are cut short)."""
    request = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(4096) if body is not None else response.read1()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_every_bad_token_gets_the_same_refusal_at_the_socket(daphne, acme_feed, bad_tokens):
    feed_uuid = acme_feed.feed.uuid

    async def answers():
        good = await handshake(publish_url(daphne, feed_uuid), bearer(acme_feed.token))
        refusals = {}
        for name, token in bad_tokens.items():
            refusals[f"{name} (header)"] = await handshake(
                publish_url(daphne, feed_uuid), bearer(token)
            )
            refusals[f"{name} (query)"] = await handshake(publish_url(daphne, feed_uuid, token), {})
        refusals["good token, no such feed"] = await handshake(
            publish_url(daphne, uuid.uuid4()), bearer(acme_feed.token)
        )
        return good, refusals

    good, refusals = asyncio.run(answers())
    assert good == (101, b"")
    assert {answer for answer in refusals.values()} == {refusals["missing (header)"]}, refusals
    assert refusals["missing (header)"][0] == 403


def test_every_bad_token_gets_the_same_403_over_http(daphne, acme_feed, bad_tokens):
    def post(feed_uuid, token):
        return http(
            f"{daphne.http}/api/feeds/{feed_uuid}/samples/",
            body=json.dumps({"value": 1}).encode(),
            headers={"Content-Type": "application/json", **bearer(token)},
        )

    good = post(acme_feed.feed.uuid, acme_feed.token)
    assert good[0] == 200 and json.loads(good[1]) == {"type": "ack", "seq": 1}
    refusals = {name: post(acme_feed.feed.uuid, token) for name, token in bad_tokens.items()}
    refusals["good token, no such feed"] = post(uuid.uuid4(), acme_feed.token)
    assert {answer for answer in refusals.values()} == {refusals["missing"]}, refusals
    status, body = refusals["missing"]
    assert status == 403 and json.loads(body)["error"] == "forbidden"


def secrets_of(acme_feed, acme_document, bad_tokens) -> dict[str, str]:
    found = {
        "producer token": acme_feed.token,
        "feed share key": acme_feed.feed.share_key,
        "document share key": acme_document.share_key,
    }
    found.update({f"{name} token": t for name, t in bad_tokens.items() if t and len(t) >= 8})
    return found


def test_no_token_or_share_key_reaches_the_server_output(
    tmp_path, acme_feed, acme_document, bad_tokens
):
    log_path = tmp_path / "daphne.log"
    server = Daphne(log_path=log_path, LOG_LEVEL="DEBUG").start()
    feed, document = acme_feed.feed, acme_document
    wrong_key = secrets.token_urlsafe(24)
    try:

        async def sockets():
            for url, headers in [
                (publish_url(server, feed.uuid, acme_feed.token), {}),
                (publish_url(server, feed.uuid), bearer(acme_feed.token)),
            ]:
                async with websockets.connect(url, additional_headers=headers) as publisher:
                    await publisher.send(json.dumps({"value": 1}))
                    assert json.loads(await publisher.recv())["type"] == "ack"
            for token in bad_tokens.values():
                await handshake(publish_url(server, feed.uuid, token), {})
                await handshake(publish_url(server, feed.uuid), bearer(token))
            for path in (f"/ws/feeds/{feed.uuid}/", f"/ws/documents/{document.uuid}/"):
                key = feed.share_key if "feeds" in path else document.share_key
                async with websockets.connect(f"{server.ws}{path}?key={key}") as viewer:
                    await viewer.recv()
                assert (await handshake(f"{server.ws}{path}?key={wrong_key}", {}))[0] == 403

        asyncio.run(sockets())
        for path, key in [
            (f"/feeds/{feed.uuid}/", feed.share_key),
            (f"/feeds/{feed.uuid}/events/", feed.share_key),
            (f"/documents/{document.uuid}/", document.share_key),
            (f"/documents/{document.uuid}/export.tsv", document.share_key),
        ]:
            assert http(f"{server.http}{path}?key={key}")[0] == 200
            assert http(f"{server.http}{path}?key={wrong_key}")[0] == 404
        publish = f"{server.http}/api/feeds/{feed.uuid}/samples/"
        for token in [acme_feed.token, *bad_tokens.values()]:
            http(publish, body=b'{"value": 1}', headers=bearer(token))
        # A client that puts the token in the query string is refused, and not logged either.
        assert http(f"{publish}?token={acme_feed.token}", body=b'{"value": 1}')[0] == 403
    finally:
        server.stop()
    output = log_path.read_text(errors="replace")
    # The output is really there: the access log names every path we used.
    assert f"/ws/feeds/{feed.uuid}/publish/" in output
    assert f"/documents/{document.uuid}/export.tsv" in output
    secrets_used = secrets_of(acme_feed, acme_document, bad_tokens)
    secrets_used["wrong share key"] = wrong_key
    leaked = [name for name, secret in secrets_used.items() if secret in output]
    assert not leaked, f"in the server's output: {leaked}"


async def test_no_token_or_share_key_reaches_the_logs_in_process(
    caplog, acme_feed, acme_document, bad_tokens
):
    caplog.set_level(logging.DEBUG)
    feed, document = acme_feed.feed, acme_document
    comm = communicator(f"/ws/feeds/{feed.uuid}/publish/?token={acme_feed.token}", origin=None)
    assert (await comm.connect())[0]
    await comm.send_to(text_data=json.dumps({"value": 1}))
    assert (await receive(comm))["type"] == "ack"
    await comm.disconnect()
    for token in bad_tokens.values():
        headers = [(b"authorization", f"Bearer {token}".encode())] if token is not None else []
        path = f"/ws/feeds/{feed.uuid}/publish/?token={token}"
        assert await refused(communicator(path, origin=None, headers=headers))
    for path, key in [
        (f"/ws/feeds/{feed.uuid}/", feed.share_key),
        (f"/ws/documents/{document.uuid}/", document.share_key),
    ]:
        viewer = communicator(f"{path}?key={key}", origin=None)
        assert (await viewer.connect())[0]
        await viewer.disconnect()

    def pages():
        client = Client()
        for path, key in [
            (f"/feeds/{feed.uuid}/", feed.share_key),
            (f"/documents/{document.uuid}/", document.share_key),
            (f"/documents/{document.uuid}/export.tsv", document.share_key),
        ]:
            response = client.get(path, {"key": key})
            assert response.status_code == 200
            if response.streaming:
                # Read to the end, as a server does: an abandoned export holds a
                # PostgreSQL server-side cursor that the garbage collector would
                # close in the middle of the next query on this connection.
                b"".join(response.streaming_content)
            assert client.get(path, {"key": key[::-1]}).status_code == 404
        for token in [acme_feed.token, *bad_tokens.values()]:
            client.post(
                f"/api/feeds/{feed.uuid}/samples/?token={token}",
                {"value": 1},
                content_type="application/json",
                headers=bearer(token),
            )

    await database_sync_to_async(pages)()
    assert any("Not Found" in r.getMessage() for r in caplog.records)  # logging was captured
    text = "\n".join(
        [
            caplog.text,
            *(str(r.args) for r in caplog.records),
            *(r.getMessage() for r in caplog.records),
        ]
    )
    secrets_found = secrets_of(acme_feed, acme_document, bad_tokens)
    secrets_found.update({"reversed feed key": feed.share_key[::-1]})
    leaked = [name for name, secret in secrets_found.items() if secret in text]
    assert not leaked, f"in the logs: {leaked}"
