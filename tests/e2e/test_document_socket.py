"""The document socket on the real server: uploads as big as DOCUMENT_MAX_BYTES pass Daphne.

Daphne's own limit on a WebSocket message is 1 MiB unless told otherwise
(streamsite.server tells it DOCUMENT_MAX_BYTES + 1 MiB). Over its limit, the
server closes the connection with 1009 as soon as the frame header announces
the length, and discards the rest as it arrives: nothing is buffered.
"""

import asyncio
import contextlib
import json

import pytest
import websockets
from django.conf import settings

from documents.services import document_create
from tests.documents.conftest import numbers_tsv, tsv_of_size
from tests.e2e.clients import next_frame

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_an_upload_of_exactly_the_limit_passes_a_bigger_one_is_refused_cleanly(daphne, world):
    document = document_create(
        tenant=world.acme, name="big", data=numbers_tsv(3), share="steer"
    ).document
    limit = settings.DOCUMENT_MAX_BYTES
    at_limit, over_limit = tsv_of_size(limit), tsv_of_size(limit + 1)
    beyond_daphne = b"x" * (settings.DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE + 1)
    url = f"{daphne.ws}/ws/documents/{document.uuid}/?key={document.share_key}"

    async def scenario():
        async with websockets.connect(url) as socket:
            assert (await next_frame(socket))["version"] == 1
            await socket.send(at_limit)
            page = await next_frame(socket)
            uploaded = await next_frame(socket)
            await socket.send(over_limit)
            too_large = await next_frame(socket)
            await socket.send(json.dumps({"type": "page", "page_no": 2}))
            still_serving = await next_frame(socket)
        socket = await websockets.connect(url)
        await next_frame(socket)
        with contextlib.suppress(websockets.ConnectionClosed, ConnectionResetError):
            await socket.send(beyond_daphne)
        with pytest.raises(websockets.ConnectionClosed):
            async with asyncio.timeout(30):
                while True:  # a presence frame may come before the close
                    await socket.recv()
        assert socket.close_code == 1009
        await socket.close()
        # The server is none the worse: the next viewer gets the current page.
        async with websockets.connect(url) as socket:
            after = await next_frame(socket)
        return page, uploaded, too_large, still_serving, after

    page, uploaded, too_large, still_serving, after = asyncio.run(scenario())
    assert (page["type"], page["version"], page["page_no"]) == ("page", 2, 1)
    assert uploaded["type"] == "uploaded" and uploaded["row_count"] == page["total_number"]
    assert (too_large["type"], too_large["error"]) == ("error", "too_large")
    assert (still_serving["version"], still_serving["page_no"]) == (2, 2)
    assert (after["version"], after["page_no"]) == (2, 2)
