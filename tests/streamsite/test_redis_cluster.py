"""The private Redis Cluster that the cluster tests run on (three masters that agree, and
sharded pub/sub through redis-py's cluster client), and Streamsite's Redis uses in cluster
mode (REDIS_CLUSTER=1): the hub's shard channels, its reconnect notices, the layer's
group_send, presence, slots, quotas and metrics across slots."""

import asyncio
import json
import time
import uuid

import pytest
import redis
from redis.cluster import RedisCluster

from streamsite import hub
from streamsite.hub import CHANNEL_PREFIX
from streamsite.runtime import Runtime
from tests.streamsite.test_hub import Recorder, eventually


@pytest.fixture(scope="module")
def cluster(redis_cluster):
    return redis_cluster


def test_three_masters_share_every_slot(cluster):
    client = RedisCluster.from_url(cluster.url)
    try:
        masters = {node.port for node in client.get_primaries()}
        assert masters == {node.port for node in cluster.nodes}
        # Keys land on different nodes, and each node answers for its own.
        for index in range(30):
            client.set(f"k{index}", index)
        assert [int(client.get(f"k{index}")) for index in range(30)] == list(range(30))
        per_node = [redis.Redis(port=n.port).dbsize() for n in cluster.nodes]
        assert all(count > 0 for count in per_node) and sum(per_node) == 30
    finally:
        client.close()


def test_a_sharded_publish_reaches_a_sharded_subscriber(cluster):
    client = RedisCluster.from_url(cluster.url)
    pubsub = client.pubsub()
    try:
        pubsub.ssubscribe("streamsite:feed.x")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            message = pubsub.get_sharded_message(timeout=0.2)
            if message and message["type"] == "ssubscribe":
                break
        assert client.spublish("streamsite:feed.x", b"hello") == 1
        received = None
        while time.monotonic() < deadline and received is None:
            message = pubsub.get_sharded_message(timeout=0.2)
            if message and message["type"] == "smessage":
                received = message["data"]
        assert received == b"hello"
    finally:
        pubsub.close()
        client.close()


# -- Streamsite in cluster mode (REDIS_CLUSTER=1), in this process ------------------


@pytest.fixture
def cluster_mode(redis_cluster_mode):
    return redis_cluster_mode


@pytest.fixture
async def cluster_runtime(cluster_mode):
    runtime = Runtime(cluster_mode.url, cluster=True)
    yield runtime
    await runtime.close()


def groups_on_every_node(cluster, per_node: int = 4) -> list[str]:
    """Feed groups whose channels hash to slots of every node, ``per_node`` on each."""
    client = RedisCluster.from_url(cluster.url)
    try:
        taken: dict[int, list[str]] = {node.port: [] for node in cluster.nodes}
        while any(len(groups) < per_node for groups in taken.values()):
            group = f"feed.{uuid.uuid4()}"
            groups = taken[client.get_node_from_key(CHANNEL_PREFIX + group).port]
            if len(groups) < per_node:
                groups.append(group)
        return [group for groups in taken.values() for group in groups]
    finally:
        client.close()


async def test_each_group_is_a_shard_channel_on_its_slots_node_and_reaches_its_subscribers(
    cluster_runtime, cluster_mode
):
    hub_ = cluster_runtime.hub
    groups = groups_on_every_node(cluster_mode)
    recorders = {group: Recorder() for group in groups}
    stranger = Recorder()
    for group, recorder in recorders.items():
        await hub_.join(group, recorder)
    await hub_.join("feed.elsewhere", stranger)
    try:
        # One subscription connection per node, and each channel on the node owning it.
        assert len(hub_._pubsub.node_names()) == 3
        for node in cluster_mode.nodes:
            shard_channels = redis.Redis(port=node.port).pubsub_shardchannels()
            owned = [c.decode() for c in shard_channels]
            assert owned and all(
                RedisCluster.from_url(cluster_mode.url).get_node_from_key(c).port == node.port
                for c in owned
            )
        for index, group in enumerate(groups):
            hub.publish(group, [(index, f'{{"n":{index}}}')])
        assert hub.flush()
        for index, group in enumerate(groups):
            await eventually(lambda r=recorders[group]: r.items)
            assert [(i.seq, i.text) for i in recorders[group].items] == [
                (index, f'{{"n":{index}}}')
            ]
        assert stranger.items == []
    finally:
        for group, recorder in recorders.items():
            await hub_.leave(group, recorder)
        await hub_.leave("feed.elsewhere", stranger)


async def test_subscribers_are_told_when_their_nodes_connection_is_renewed(
    cluster_runtime, cluster_mode
):
    hub_ = cluster_runtime.hub
    groups = groups_on_every_node(cluster_mode)
    recorders = {group: Recorder() for group in groups}
    for group, recorder in recorders.items():
        await hub_.join(group, recorder)
    try:
        for node in cluster_mode.nodes:  # every node drops the hub's connection
            assert redis.Redis(port=node.port).client_kill_filter(_type="pubsub") == 1
        for recorder in recorders.values():
            await eventually(lambda r=recorder: r.reconnections == 1)
        assert hub_.problem() is None
        for group in groups:
            hub.publish(group, [(None, '"after"')])
        assert hub.flush()
        for recorder in recorders.values():
            await eventually(lambda r=recorder: [i.text for i in r.items] == ['"after"'])
    finally:
        for group, recorder in recorders.items():
            await hub_.leave(group, recorder)


async def test_a_layer_group_send_reaches_the_groups_viewers(cluster_runtime, cluster_mode):
    from streamsite.cluster import ClusterChannelLayer

    layer = ClusterChannelLayer(
        hosts=[cluster_mode.url], prefix="streamsite", serializer_format="json"
    )
    watching = Recorder()
    await cluster_runtime.hub.join("feed.layer", watching)
    try:
        await layer.group_send(
            "feed.layer", {"type": "stream.frame", "frame": {"type": "presence", "watching": 2}}
        )
        await eventually(lambda: watching.items)
        assert json.loads(watching.items[0].text) == {"type": "presence", "watching": 2}
    finally:
        await cluster_runtime.hub.leave("feed.layer", watching)


async def test_presence_slots_quotas_and_metrics_work_across_slots(cluster_runtime, cluster_mode):
    from streamsite import metrics, presence, slots

    # Presence: each group's two keys share a slot (one round trip), groups spread.
    groups = groups_on_every_node(cluster_mode, 2)
    for group in groups:
        member, count = await cluster_runtime.presence.enter(group, {"user": 1})
        assert count == 1
        assert await asyncio.to_thread(presence.watching_count, group) == 1
        assert [d["user"] for d in await asyncio.to_thread(presence.watching, group)] == [1]
        await cluster_runtime.presence.leave(group, member)
        assert await asyncio.to_thread(presence.watching_count, group) == 0

    # Slots: one script over a connection's three caps, all or none, async and sync.
    user, key, address = (uuid.uuid4().hex for _ in range(3))
    held = await slots.claim([slots.Claim("connections_per_share_key", key, 1)])
    with pytest.raises(slots.Refused) as refused:
        await slots.claim(
            [
                slots.Claim("connections_per_user", user, 5),
                slots.Claim("connections_per_share_key", key, 1),
                slots.Claim("connections_per_address", address, 5),
            ]
        )
    assert refused.value.claim.limit == "connections_per_share_key"
    assert await asyncio.to_thread(slots.held, "connections_per_user", user) == 0
    await held.release()
    lease = await asyncio.to_thread(
        slots.claim_sync,
        [
            slots.Claim("connections_per_user", user, 1),
            slots.Claim("connections_per_address", address, 1),
        ],
    )
    assert await asyncio.to_thread(slots.held, "connections_per_address", address) == 1
    await asyncio.to_thread(lease.release_sync)
    assert await asyncio.to_thread(slots.held, "connections_per_user", user) == 0

    # Metrics: per-feed counters on many nodes, process totals found by a SCAN of every node.
    feeds = [str(uuid.uuid4()) for _ in range(6)]
    client = hub.sync_client()
    minute = int(time.time() // 60) - 1
    for index, feed in enumerate(feeds):
        client.set(metrics.samples_key(feed, minute), 60 * (index + 1))
    metrics.inc("frames_in_total", 3)
    await cluster_runtime.metrics.flush()
    text = await asyncio.to_thread(
        metrics.render, client, {f: f"f{i}" for i, f in enumerate(feeds)}
    )
    assert 'name="f5"} 6.000' in text
    assert "streamsite_frames_in_total " in text
    status = cluster_runtime.pool_status()
    assert status["max"] == 50 * 3 and 0 <= status["in_use"] <= status["open"]
    nodes = [redis.Redis(port=node.port) for node in cluster_mode.nodes]
    for node in nodes:
        node.config_resetstat()
    assert await cluster_runtime.ping()
    # /healthz's ping asks every primary, not one of them.
    assert all(node.info("commandstats").get("cmdstat_ping") for node in nodes)


def test_a_feed_follower_listens_on_its_sources_shard_channel(cluster_mode, acme_feed):
    from streams.events import feed_group
    from streams.producers import FeedFollower
    from streams.services import samples_append

    feed = acme_feed.feed
    follower = FeedFollower(feed, after_seq=0)
    try:
        follower._subscribe()
        channel = CHANNEL_PREFIX + feed_group(feed.uuid)
        owner = RedisCluster.from_url(cluster_mode.url).get_node_from_key(channel)
        # Where the source's samples are SPUBLISHed: the node owning the channel's slot.
        assert redis.Redis(port=owner.port).pubsub_shardnumsub(channel) == [(channel.encode(), 1)]
        samples_append(feed=feed, values=[(1, None)])
        assert [s.seq for s in follower.wait(5)] == [1]
    finally:
        follower.close()


def test_check_deploy_accepts_a_cluster_and_refuses_a_single_redis_in_cluster_mode(
    cluster, settings
):
    from django.core.checks import run_checks

    from streamsite import checks

    def ids() -> list[str]:
        found = run_checks(tags=[checks.TAG], include_deployment_checks=True)
        return [m.id for m in found if m.id == "streamsite.E005"]

    single = settings.REDIS_URL  # the suite's own Redis: no cluster
    settings.DEBUG, settings.REDIS_CLUSTER, settings.REDIS_URL = False, True, cluster.url
    assert ids() == []
    settings.REDIS_URL = single
    assert ids() == ["streamsite.E005"]
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    assert ids() == ["streamsite.E005"]
    settings.REDIS_CLUSTER = False
    assert ids() == []


async def test_a_burst_of_presence_waits_for_the_clusters_connections_instead_of_failing(
    cluster_mode, caplog
):
    from streamsite.presence import count_watching

    runtime = Runtime(cluster_mode.url, pool_size=4, pool_timeout=30, cluster=True)
    group = f"feed.{uuid.uuid4()}"
    entered: list = []
    try:
        with caplog.at_level("WARNING"):
            entered = await asyncio.gather(
                *(runtime.presence.enter(group, {"user": n}) for n in range(300))
            )
        assert not [r for r in caplog.records if "failed" in r.getMessage()]
        assert max(count for _, count in entered) == 300
        assert await count_watching(runtime.redis, group) == 300
        status = runtime.pool_status()
        assert status["max"] == 4 * 3 and status["open"] <= 4 * 3
    finally:
        await asyncio.gather(*(runtime.presence.leave(group, m) for m, _ in entered))
        await runtime.close()


async def test_an_unreachable_cluster_fails_open_as_an_unreachable_redis_does(
    settings, monkeypatch
):
    """redis-py raises RedisClusterException (no RedisError) when no node answers: presence,
    slots and the publisher must still take it as Redis being away."""
    from streamsite import presence, slots

    settings.REDIS_URL, settings.REDIS_CLUSTER = "redis://127.0.0.1:1/0", True  # nobody there
    with hub._sync_lock:  # after a client another thread may be making with the old settings
        monkeypatch.setattr(hub, "_sync_client", None)
    runtime = Runtime(settings.REDIS_URL, cluster=True)
    try:
        # Not refused, though the cap is 0: caps are not counted while Redis is away.
        lease = await asyncio.to_thread(
            slots.claim_sync, [slots.Claim("concurrent_uploads", "t", 0)]
        )
        await asyncio.to_thread(lease.release_sync)
        _, count = await runtime.presence.enter("feed.away", {"user": 1})
        assert count == 0
        with pytest.raises(redis.ConnectionError):
            await runtime.hub.join("feed.away", Recorder())
        with pytest.raises(redis.ConnectionError):
            await asyncio.to_thread(presence.watching_count, "feed.away")
        hub.publish("feed.away", [(None, '"lost"')])
        assert await asyncio.to_thread(hub.flush)
        assert hub._the_publisher is not None and hub._the_publisher.is_alive()
        assert "does not answer" in (hub.live_events_problem() or "")
    finally:
        await runtime.close()
