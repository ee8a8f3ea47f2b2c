"""One admission step for WebSockets and event streams (streamsite.control.AccessWatch.enter).

A share key revoked after the first access check but before the connection
joined its tenant's control group would never reach that connection as a
notice; the admission step checks again after joining. Both transports must.
"""

import json

import pytest
import redis
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from streams.services import feed_share_key_revoke
from streamsite import frames
from streamsite.control import AccessWatch
from tests.streams.wsclient import communicator, refused

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def revoked_while_joining(monkeypatch, acme_feed):
    """The feed's share key is revoked at the moment a connection joins its control group."""
    start = AccessWatch.start

    async def revoke_then_join(self):
        await sync_to_async(feed_share_key_revoke)(feed=acme_feed.feed)
        await start(self)

    monkeypatch.setattr(AccessWatch, "start", revoke_then_join)
    return acme_feed.feed


async def test_a_socket_let_in_by_a_key_revoked_while_joining_is_refused(revoked_while_joining):
    feed = revoked_while_joining
    comm = communicator(f"/ws/feeds/{feed.uuid}/?key={feed.share_key}", origin=None)
    assert await refused(comm)


async def test_an_event_stream_let_in_by_a_key_revoked_while_joining_is_404(revoked_while_joining):
    feed = revoked_while_joining
    response = await AsyncClient().get(f"/feeds/{feed.uuid}/events/?key={feed.share_key}")
    assert response.status_code == 404


async def test_an_event_stream_with_a_good_key_is_admitted(acme_feed):
    feed = acme_feed.feed
    response = await AsyncClient().get(f"/feeds/{feed.uuid}/events/?key={feed.share_key}")
    assert response.status_code == 200 and response.streaming
    chunks = response.streaming_content
    assert (await anext(chunks)).startswith(b"retry:")
    await chunks.aclose()


async def test_with_live_events_down_an_event_stream_says_unavailable_and_ends(
    monkeypatch, acme_feed
):
    async def redis_away(self):
        raise redis.ConnectionError("Redis is away")

    monkeypatch.setattr(AccessWatch, "start", redis_away)
    feed = acme_feed.feed
    response = await AsyncClient().get(f"/feeds/{feed.uuid}/events/?key={feed.share_key}")
    assert response.status_code == 200  # an EventSource retries a stream that ends, not a 503
    body = b"".join([chunk async for chunk in response.streaming_content]).decode()
    assert body.startswith("retry: 2000\n\n") and "event: error\n" in body
    frame = frames.check(json.loads(body.rsplit("data: ", 1)[1]))
    assert frame["error"] == "unavailable"
