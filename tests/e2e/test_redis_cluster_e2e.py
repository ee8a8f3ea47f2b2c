"""Redis Cluster as the live-events engine, end to end (REDIS_CLUSTER=1).

A private three-node Redis Cluster (redis-server 7 in cluster mode on loopback
ports), two Daphne processes (``python -m streamsite.server``) that share one
database, each given a different node as REDIS_URL, and this process (services:
revocation) in cluster mode too. What crosses processes goes through the
cluster: samples, page changes, presence, revocation; a stranger is refused.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import pytest
import redis
import websockets
from redis.cluster import RedisCluster

from documents.services import document_create
from streams.models import FeedKind, ProducerKind
from streams.services import feed_create, feed_share_key_revoke, producer_create
from streamsite.hub import CHANNEL_PREFIX
from tests.conftest import Daphne
from tests.documents.conftest import numbers_tsv
from tests.e2e.clients import next_sample, turn_page

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def servers(redis_cluster, django_db_setup, django_db_blocker):
    """Server A on the cluster's first node, server B on its second."""
    started = [
        Daphne(REDIS_CLUSTER="1", REDIS_URL=node.url).start() for node in redis_cluster.nodes[:2]
    ]
    yield started
    for server in started:
        server.stop()


@pytest.fixture(autouse=True)
def cluster_mode(redis_cluster_mode):
    return redis_cluster_mode


def healthz(server: Daphne) -> dict:
    with urllib.request.urlopen(f"{server.http}/healthz", timeout=10) as response:
        return json.loads(response.read())


async def closed_with(socket, within: float) -> int:
    """The close code of ``socket`` (frames before it are skipped), within ``within`` s."""
    async with asyncio.timeout(within):
        while True:
            try:
                await socket.recv()
            except websockets.ConnectionClosed as closed:
                assert closed.rcvd is not None
                return closed.rcvd.code


def test_samples_published_through_one_process_reach_a_viewer_on_the_other_in_order(
    servers, acme_feed
):
    a, b = servers
    feed = acme_feed.feed

    async def scenario():
        viewer_url = f"{b.ws}/ws/feeds/{feed.uuid}/?key={feed.share_key}"
        async with websockets.connect(viewer_url) as viewer:
            hello = json.loads(await viewer.recv())
            async with websockets.connect(
                f"{a.ws}/ws/feeds/{feed.uuid}/publish/",
                additional_headers={"Authorization": f"Bearer {acme_feed.token}"},
            ) as producer:
                for index in range(60):
                    await producer.send(json.dumps({"value": index % 2}))
                acks = [json.loads(await producer.recv())["seq"] for _ in range(60)]
            samples = [await next_sample(viewer) for _ in range(60)]
        return hello, acks, samples

    hello, acks, samples = asyncio.run(scenario())
    assert hello["type"] == "hello" and acks == list(range(1, 61))
    assert [(s["seq"], s["value"]) for s in samples] == [(i + 1, i % 2) for i in range(60)]
    for server in servers:
        health = healthz(server)
        assert health["status"] == "ok", health


def test_a_page_change_on_one_process_reaches_a_follower_on_the_other(servers, world):
    a, b = servers
    document = document_create(
        tenant=world.acme, name="shared", data=numbers_tsv(250), share="steer"
    ).document
    path = f"/ws/documents/{document.uuid}/?key={document.share_key}"
    first, turned = asyncio.run(turn_page(f"{a.ws}{path}", f"{b.ws}{path}", 3))
    assert first == [1, 1]
    assert [(f["page_no"], f["state"]) for f in turned] == [(3, 2), (3, 2)]
    assert turned[1]["data"][0][0] == "201"  # the first row of page 3


def test_viewers_on_both_processes_each_see_the_total_count(servers, acme_feed):
    feed = acme_feed.feed

    async def watching_two(socket) -> None:
        async with asyncio.timeout(15):
            while True:
                frame = json.loads(await socket.recv())
                if frame["type"] == "presence" and frame["watching"] == 2:
                    return

    async def scenario():
        urls = [f"{s.ws}/ws/feeds/{feed.uuid}/?key={feed.share_key}" for s in servers]
        async with websockets.connect(urls[0]) as on_a, websockets.connect(urls[1]) as on_b:
            await asyncio.gather(watching_two(on_a), watching_two(on_b))

    asyncio.run(scenario())


def test_a_revoked_share_key_closes_its_viewers_on_both_processes(servers, acme_feed):
    feed = acme_feed.feed

    async def scenario():
        urls = [f"{s.ws}/ws/feeds/{feed.uuid}/?key={feed.share_key}" for s in servers]
        async with websockets.connect(urls[0]) as on_a, websockets.connect(urls[1]) as on_b:
            for socket in (on_a, on_b):
                assert json.loads(await socket.recv())["type"] == "hello"
            await asyncio.to_thread(feed_share_key_revoke, feed=feed)
            started = time.monotonic()
            codes = await asyncio.gather(closed_with(on_a, 10), closed_with(on_b, 10))
            return codes, time.monotonic() - started

    codes, after = asyncio.run(scenario())
    print(f"\nboth viewers closed {after:.2f} s after the revocation")
    assert codes == [4403, 4403]


def test_a_strangers_key_and_token_are_refused_on_either_process(servers, acme_feed, globex_feed):
    feed = acme_feed.feed

    async def refused(url: str, **kwargs) -> int:
        try:
            async with websockets.connect(url, **kwargs) as socket:
                return await closed_with(socket, 10)
        except websockets.InvalidStatus as exc:
            return exc.response.status_code

    async def scenario():
        results = []
        for server in servers:
            results.append(
                await refused(f"{server.ws}/ws/feeds/{feed.uuid}/?key={globex_feed.feed.share_key}")
            )
            results.append(
                await refused(
                    f"{server.ws}/ws/feeds/{feed.uuid}/publish/",
                    additional_headers={"Authorization": f"Bearer {globex_feed.token}"},
                )
            )
        return results

    results = asyncio.run(scenario())
    assert results == [403, 403, 403, 403], results  # refused before the handshake
    assert feed.samples.count() == 0


def test_groups_spread_over_the_nodes_each_on_the_node_owning_its_slot(
    servers, world, redis_cluster
):
    a, b = servers
    client = RedisCluster.from_url(redis_cluster.url)
    try:
        # Feeds until their groups lie on at least two nodes (random UUIDs: a few suffice).
        feeds, owners = [], set()
        while len(owners) < 2 or len(feeds) < 4:
            feed = feed_create(
                tenant=world.acme, name=f"spread {len(feeds)}", kind=FeedKind.NUMERIC, share=True
            )
            _, token = producer_create(feed=feed, kind=ProducerKind.EXTERNAL)
            feeds.append((feed, token))
            owners.add(client.get_node_from_key(f"{CHANNEL_PREFIX}feed.{feed.uuid}").port)

        async def scenario():
            viewers = [
                await websockets.connect(f"{b.ws}/ws/feeds/{f.uuid}/?key={f.share_key}")
                for f, _ in feeds
            ]
            try:
                for viewer in viewers:
                    assert json.loads(await viewer.recv())["type"] == "hello"
                # Each group is a shard channel on the node owning its slot, and only there.
                subscribed = {
                    node.port: {
                        c.decode() for c in redis.Redis(port=node.port).pubsub_shardchannels()
                    }
                    for node in redis_cluster.nodes
                }
                for f, token in feeds:
                    channel = f"{CHANNEL_PREFIX}feed.{f.uuid}"
                    owner = client.get_node_from_key(channel).port
                    assert [p for p, names in subscribed.items() if channel in names] == [owner]
                    async with websockets.connect(
                        f"{a.ws}/ws/feeds/{f.uuid}/publish/",
                        additional_headers={"Authorization": f"Bearer {token}"},
                    ) as producer:
                        await producer.send(json.dumps({"value": 2.5}))
                        assert json.loads(await producer.recv())["seq"] == 1
                return [(await next_sample(v))["value"] for v in viewers]
            finally:
                for viewer in viewers:
                    await viewer.close()

        assert asyncio.run(scenario()) == [2.5] * len(feeds)
        assert len(owners) >= 2
    finally:
        client.close()
