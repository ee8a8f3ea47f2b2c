"""What the real server sends is what streamsite.frames defines (checked frame by frame)."""

import asyncio
import json

import pytest
import websockets

from documents.services import document_create
from streamsite import frames
from tests.documents.conftest import numbers_tsv

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


async def _frames_until(socket, count: int) -> list[dict]:
    got = []
    async with asyncio.timeout(30):
        while len(got) < count:
            got.append(frames.check(json.loads(await socket.recv())))
    return got


def test_feed_sockets_send_only_catalogued_frames(daphne, acme_feed):
    feed = acme_feed.feed

    async def scenario():
        viewer_url = f"{daphne.ws}/ws/feeds/{feed.uuid}/?key={feed.share_key}"
        publish_url = f"{daphne.ws}/ws/feeds/{feed.uuid}/publish/"
        async with websockets.connect(viewer_url) as viewer:
            (hello,) = await _frames_until(viewer, 1)
            async with websockets.connect(
                publish_url, additional_headers={"Authorization": f"Bearer {acme_feed.token}"}
            ) as producer:
                await producer.send(json.dumps({"value": 1}))
                await producer.send("not json")
                await producer.send(json.dumps({"value": 7}))
                answers = await _frames_until(producer, 3)
            seen = []
            while not any(f["type"] == "sample" for f in seen):
                seen += await _frames_until(viewer, 1)
        async with websockets.connect(viewer_url + "&since=x") as bad:
            (refusal,) = await _frames_until(bad, 1)
            with pytest.raises(websockets.ConnectionClosed):
                await bad.recv()
        return hello, answers, seen, refusal, bad.close_code

    hello, answers, seen, refusal, close_code = asyncio.run(scenario())
    assert hello["type"] == "hello" and hello["watching"] >= 1
    assert [a["type"] for a in answers] == ["ack", "error", "error"]
    assert [a.get("error") for a in answers[1:]] == ["bad_json", "bad_value"]
    assert seen[-1]["type"] == "sample"
    assert refusal["error"] == "bad_frame" and close_code == frames.Close.BAD_QUERY


def test_document_socket_sends_only_catalogued_frames(daphne, world):
    document = document_create(
        tenant=world.acme, name="wire", data=numbers_tsv(250), share="steer"
    ).document
    url = f"{daphne.ws}/ws/documents/{document.uuid}/?key={document.share_key}"

    async def scenario():
        async with websockets.connect(url) as socket:
            first = await _frames_until(socket, 2)  # the page, then presence
            await socket.send(json.dumps({"type": "page", "page_no": 99}))
            await socket.send(numbers_tsv(5))
            rest = []
            while not any(f["type"] == "uploaded" for f in rest):
                rest += await _frames_until(socket, 1)
        return first + rest

    types = [f["type"] for f in asyncio.run(scenario())]
    assert {"page", "presence", "error", "uploaded"} <= set(types)
