"""The hub's own subscription (streamsite.pubsub) against a real, private redis-server."""

from __future__ import annotations

import asyncio

import pytest
import redis

from streamsite.pubsub import Subscription
from streamsite.redisproc import PrivateRedis


@pytest.fixture
def private_redis():
    server = PrivateRedis().start()
    yield server
    server.stop()


async def _until(subscription: Subscription, count: int, within: float = 5.0) -> list[dict]:
    got: list[dict] = []
    async with asyncio.timeout(within):
        while len(got) < count:
            got += await subscription.read_messages(timeout=1.0)
    return got


def test_messages_arrive_in_order_and_a_burst_in_few_reads(private_redis):
    async def scenario():
        subscription = Subscription(private_redis.url)
        await subscription.subscribe("a")
        await subscription.subscribe("b")
        confirmations = await _until(subscription, 2)
        client = redis.asyncio.Redis.from_url(private_redis.url)
        async with client.pipeline(transaction=False) as pipe:
            for n in range(500):
                pipe.publish("a" if n % 2 else "b", str(n))
            await pipe.execute()
        reads, messages = 0, []
        async with asyncio.timeout(5):
            while len(messages) < 500:
                messages += await subscription.read_messages(timeout=1.0)
                reads += 1
        await client.publish("c", "not subscribed")
        await subscription.unsubscribe("a")
        # Redis confirms it (commands on two connections have no order between them).
        (left,) = await _until(subscription, 1)
        await client.publish("a", "after unsubscribe")
        await client.publish("b", "last")
        tail = await _until(subscription, 1)
        await client.aclose()
        await subscription.aclose()
        return confirmations, messages, reads, left, tail

    confirmations, messages, reads, left, tail = asyncio.run(scenario())
    assert [(m["type"], m["channel"]) for m in confirmations] == [
        ("subscribe", b"a"),
        ("subscribe", b"b"),
    ]
    assert [int(m["data"]) for m in messages] == list(range(500))
    assert all(m["type"] == "message" for m in messages)
    assert [m["channel"] for m in messages[:2]] == [b"b", b"a"]
    assert reads < 50  # hundreds of messages per socket read, not one call each
    assert (left["type"], left["channel"], left["data"]) == ("unsubscribe", b"a", 1)
    assert [(m["type"], m["channel"], m["data"]) for m in tail] == [("message", b"b", b"last")]


def test_a_lost_connection_raises_once_then_reconnects_and_subscribes_again(private_redis):
    async def scenario():
        subscription = Subscription(private_redis.url)
        await subscription.subscribe("a")
        await subscription.subscribe("b")
        await _until(subscription, 2)
        client = redis.asyncio.Redis.from_url(private_redis.url)
        await client.client_kill_filter(_type="pubsub")
        with pytest.raises(redis.ConnectionError):
            async with asyncio.timeout(5):
                while True:
                    await subscription.read_messages(timeout=1.0)
        renewed = await _until(subscription, 2)  # this read connects again
        await client.publish("a", "after")
        (message,) = await _until(subscription, 1)
        await client.aclose()
        await subscription.aclose()
        return renewed, message

    renewed, message = asyncio.run(scenario())
    assert sorted((m["type"], m["channel"]) for m in renewed) == [
        ("subscribe", b"a"),
        ("subscribe", b"b"),
    ]
    assert message["data"] == b"after"


def test_redis_away_is_a_connection_error_and_a_password_is_sent(private_redis):
    async def scenario():
        client = redis.asyncio.Redis.from_url(private_redis.url)
        await client.config_set("requirepass", "s3cret")
        await client.aclose()
        port = private_redis.url.rsplit(":", 1)[1].split("/")[0]
        right = Subscription(f"redis://:s3cret@127.0.0.1:{port}/0")
        await right.subscribe("a")
        (confirmation,) = await _until(right, 1)
        await right.aclose()
        wrong = Subscription(f"redis://:nope@127.0.0.1:{port}/0")
        with pytest.raises(redis.AuthenticationError):
            await wrong.subscribe("a")
        private_redis.stop()
        away = Subscription(f"redis://:s3cret@127.0.0.1:{port}/0")
        with pytest.raises(redis.ConnectionError):
            await away.subscribe("a")
        return confirmation

    assert asyncio.run(scenario())["type"] == "subscribe"
