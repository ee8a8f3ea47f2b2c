"""The channel layer (CHANNEL_LAYERS: channels-redis's pub/sub layer) is the hub's public door:
a group_send from any process reaches the group's viewers, on the real server too."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from channels.layers import get_channel_layer

from streamsite import frames
from streamsite.hub import CHANNEL_PREFIX, Hub, Item
from tests.e2e.clients import next_frame
from tests.streamsite.test_hub import eventually


class Recorder:
    def __init__(self) -> None:
        self.items: list[Item] = []

    async def hub_deliver(self, items: list[Item]) -> None:
        self.items.extend(items)

    async def hub_reconnected(self) -> None:
        pass


async def test_the_layers_group_channels_are_the_hubs():
    # channels-redis names a group's channel itself (a private method): if an upgrade
    # renames it, group_send no longer reaches viewers, and this fails.
    layer = get_channel_layer()
    assert layer._get_layer()._get_group_channel_name("feed.x") == CHANNEL_PREFIX + "feed.x"


async def test_a_group_send_reaches_every_subscriber_of_the_group_and_only_them():
    hub = Hub.current()
    watching, elsewhere = Recorder(), Recorder()
    await hub.join("layer.a", watching)
    await hub.join("layer.b", elsewhere)
    try:
        frame = frames.presence(7)
        await get_channel_layer().group_send(
            "layer.a", {"type": "stream.frame", "frame": frame, "seq": 12}
        )
        await eventually(lambda: watching.items)
        (item,) = watching.items
        assert item.seq == 12 and json.loads(item.text) == frame
        assert item.wire == frames.websocket_frame(item.text)
        assert elsewhere.items == []
    finally:
        await hub.leave("layer.a", watching)
        await hub.leave("layer.b", elsewhere)


async def test_a_layer_message_that_is_not_a_frame_reaches_nobody_and_breaks_nothing():
    hub = Hub.current()
    watching = Recorder()
    await hub.join("layer.c", watching)
    try:
        layer = get_channel_layer()
        await layer.group_send("layer.c", {"type": "chat.message", "text": "hi"})
        await layer.group_send("layer.c", {"type": "stream.frame", "frame": "not an object"})
        await layer.group_send("layer.c", {"type": "stream.frame", "frame": frames.presence(1)})
        await eventually(lambda: watching.items)
        assert [json.loads(item.text) for item in watching.items] == [frames.presence(1)]
    finally:
        await hub.leave("layer.c", watching)


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
async def test_a_group_send_from_another_process_reaches_a_viewer_of_the_real_server(
    daphne, acme_feed
):
    feed = acme_feed.feed
    url = f"{daphne.ws}/ws/feeds/{feed.uuid}/?key={feed.share_key}"
    async with websockets.connect(url) as socket:
        assert (await next_frame(socket))["type"] == "hello"
        # This test process is "another process": the server hears it through Redis.
        await get_channel_layer().group_send(
            f"feed.{feed.uuid}", {"type": "stream.frame", "frame": frames.presence(42)}
        )
        async with asyncio.timeout(10):
            while True:
                frame = json.loads(await socket.recv())
                if frame == frames.presence(42):
                    break
