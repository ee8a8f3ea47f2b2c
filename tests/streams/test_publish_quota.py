"""samples_per_second: one budget per tenant over all its feeds, sockets and the HTTP API.

Frames over it are refused (``quota_exceeded``), not stored; the socket stays
open, and the neighbour tenant's publisher is acknowledged meanwhile.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from streams.models import FeedKind
from streams.services import feed_create, producer_create
from tests.streams.test_publish_consumer import persisted, publisher
from tests.streams.wsclient import receive

pytestmark = pytest.mark.django_db(transaction=True)


def set_quota(tenant, value: int) -> None:
    tenant.quota_samples_per_second = value
    tenant.save(update_fields=["quota_samples_per_second"])


async def connected(feed_uuid, token):
    comm = publisher(feed_uuid, bearer=token)
    ok, _ = await comm.connect()
    assert ok
    return comm


async def test_frames_over_the_tenants_rate_are_refused_unstored_and_the_neighbour_is_acked(
    world, acme_feed, globex_feed
):
    await database_sync_to_async(set_quota)(world.acme, 10)
    acme = await connected(acme_feed.feed.uuid, acme_feed.token)
    globex = await connected(globex_feed.feed.uuid, globex_feed.token)

    await acme.send_to(text_data=json.dumps({"values": [1] * 10}))
    first = await receive(acme)
    await acme.send_to(text_data=json.dumps({"values": [0] * 5}))
    refused = await receive(acme)
    await globex.send_to(text_data=json.dumps({"values": [0.5] * 50}))
    neighbour = await receive(globex)

    assert first == {"type": "ack", "seq": 10}
    assert (refused["type"], refused["error"], refused["limit"]) == (
        "error",
        "quota_exceeded",
        "samples_per_second",
    )
    assert "10" in refused["message"]
    assert len(await persisted(acme_feed.feed)) == 10  # the refused five were not stored
    assert neighbour == {"type": "ack", "seq": 50}
    # The socket stays open, and the budget refills: a second later it publishes again.
    await asyncio.sleep(1.1)
    await acme.send_to(text_data=json.dumps({"value": 1}))
    assert await receive(acme) == {"type": "ack", "seq": 11}
    await acme.disconnect()
    await globex.disconnect()


async def test_the_rate_is_one_budget_for_all_the_tenants_feeds(world, acme_feed):
    def second_feed():
        feed = feed_create(tenant=world.acme, name="second", kind=FeedKind.NUMERIC)
        return feed, producer_create(feed=feed, kind="external")[1]

    await database_sync_to_async(set_quota)(world.acme, 8)
    other_feed, other_token = await database_sync_to_async(second_feed)()
    one = await connected(acme_feed.feed.uuid, acme_feed.token)
    two = await connected(other_feed.uuid, other_token)

    await one.send_to(text_data=json.dumps({"values": [1] * 6}))
    assert (await receive(one))["type"] == "ack"
    await two.send_to(text_data=json.dumps({"values": [2.0] * 6}))
    refused = await receive(two)

    assert refused["limit"] == "samples_per_second"
    assert len(await persisted(other_feed)) == 0
    await one.disconnect()
    await two.disconnect()


def test_http_publish_over_the_rate_is_429_and_the_neighbour_is_acked(
    world, acme_feed, globex_feed
):
    set_quota(world.acme, 3)
    client = Client()

    def publish(feed, token, frame):
        return client.post(
            f"/api/feeds/{feed.uuid}/samples/",
            json.dumps(frame),
            content_type="application/json",
            headers={"Authorization": f"Bearer {token}"},
        )

    ok = publish(acme_feed.feed, acme_feed.token, {"values": [1, 0, 1]})
    refused = publish(acme_feed.feed, acme_feed.token, {"value": 1})
    neighbour = publish(globex_feed.feed, globex_feed.token, {"values": [1.5] * 20})

    assert ok.status_code == 200
    assert refused.status_code == 429
    assert (refused.json()["error"], refused.json()["limit"]) == (
        "quota_exceeded",
        "samples_per_second",
    )
    acme_feed.feed.refresh_from_db()
    assert acme_feed.feed.last_seq == 3
    assert neighbour.status_code == 200 and neighbour.json()["seq"] == 20


def test_asks_in_one_group_commit_are_served_in_order_as_separate_calls_would_be(world):
    # The ingest writer asks once per group commit for every socket queued:
    # the tenant's asks share its bucket in order; each ask stops at its first
    # frame over the budget; the neighbour's budget is its own.
    from tenants.quotas import SamplesAsk, take_samples_many

    granted = take_samples_many(
        [
            SamplesAsk(world.acme, 1000, [600]),
            SamplesAsk(world.globex, 1000, [1000]),
            SamplesAsk(world.acme, 1000, [300, 500, 100]),
            SamplesAsk(world.acme, 1000, [100, 100]),
        ]
    )

    assert granted == [1, 1, 1, 1]
    # acme spent 600 + 300 + 100: the 500 was refused, and the 100 after it in
    # its ask with it; nothing is left of either budget (half a second refills 500).
    assert take_samples_many(
        [SamplesAsk(world.acme, 1000, [500]), SamplesAsk(world.globex, 1000, [500])]
    ) == [0, 0]
