"""DocumentSession against a scripted server: reconnection, order of states, requests, close codes."""

from __future__ import annotations

import asyncio
import json

import pytest
from conftest import FakeServer
from streamsite_client import AccessRevoked, Backoff, Client, ConnectionLost, DocumentError

FAST = Backoff(initial=0.01, maximum=0.05)


def page(page_no: int, state: int, version: int = 1) -> str:
    return json.dumps(
        {"type": "page", "page_no": page_no, "page_size": 2, "total_number": 6,
         "total_pages": 3, "columns": ["a"], "data": [[str(page_no)]], "version": version,
         "state": state}
    )  # fmt: skip


async def test_pages_come_once_per_state_across_reconnections(fake: FakeServer):
    async def script(socket, index):
        if index == 0:
            await socket.send(page(1, 5))
            await socket.send(page(2, 6))
            await socket.close(1001)
        else:
            await socket.send(page(2, 6))  # the same state again after reconnecting
            await socket.send(page(3, 7))
            await socket.wait_closed()

    fake.script = script
    async with Client(fake.url, key="K", backoff=FAST).document("d") as doc:
        seen = []
        async with asyncio.timeout(10):
            async for shown in doc.pages():
                seen.append(shown.state)
                if shown.state == 7:
                    break
    assert seen in ([5, 6, 7], [6, 7])  # from the page current when pages() began; 6 once
    assert fake.paths[0] == "/ws/documents/d/?key=K"


async def test_turn_and_upload_are_answered_in_order_and_refusals_raise(fake: FakeServer):
    async def script(socket, index):
        await socket.send(page(1, 1))
        request = await fake.recv(socket)
        assert request == {"type": "page", "page_no": 3}
        await socket.send(page(3, 2))
        await fake.recv(socket)
        await socket.send(json.dumps({"type": "error", "error": "out_of_range", "message": "no"}))
        upload = await fake.recv(socket)
        assert upload == b"a\n1\n"
        await socket.send(page(1, 3, version=2))
        await socket.send(
            json.dumps({"type": "uploaded", "version": 2, "row_count": 1, "warnings": []})
        )
        await socket.wait_closed()

    fake.script = script
    async with Client(fake.url, key="K").document("d") as doc:
        turned = await doc.turn(3)
        with pytest.raises(DocumentError) as refused:
            await doc.turn(9)
        uploaded = await doc.upload("a\n1\n")
        assert (doc.page.version, doc.page.page_no) == (2, 1)
    assert turned.page_no == 3 and refused.value.code == "out_of_range"
    assert (uploaded.version, uploaded.row_count) == (2, 1)


async def test_a_request_cut_off_by_a_drop_raises_connection_lost(fake: FakeServer):
    async def script(socket, index):
        await socket.send(page(1, 1))
        if index == 0:
            await fake.recv(socket)
            await socket.close(1001)
        else:
            await socket.wait_closed()

    fake.script = script
    async with Client(fake.url, backoff=FAST).document("d") as doc:
        with pytest.raises(ConnectionLost):
            await doc.turn(2)


async def test_a_revoked_key_ends_pages_with_access_revoked(fake: FakeServer):
    async def script(socket, index):
        await socket.send(page(1, 1))
        await socket.send(json.dumps({"type": "error", "error": "revoked", "message": "gone"}))
        await socket.close(4403)

    fake.script = script
    async with Client(fake.url, backoff=FAST).document("d") as doc:
        with pytest.raises(AccessRevoked):
            async with asyncio.timeout(10):
                async for _ in doc.pages():
                    pass
    assert len(fake.paths) == 1
