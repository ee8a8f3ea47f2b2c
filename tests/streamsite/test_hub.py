"""The hub against a Redis that dies and comes back (a private redis-server per test)."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from streamsite.hub import CHANNEL_PREFIX, Hub, Item
from streamsite.redisproc import PrivateRedis


class Recorder:
    def __init__(self) -> None:
        self.items: list[Item] = []
        self.reconnections = 0

    async def hub_deliver(self, items: list[Item]) -> None:
        self.items.extend(items)

    async def hub_reconnected(self) -> None:
        self.reconnections += 1


@pytest.fixture
def private_redis():
    server = PrivateRedis().start()
    yield server
    server.stop()


async def publish(url: str, group: str, text: str) -> None:
    client = redis.asyncio.Redis.from_url(url)
    try:
        await client.publish(CHANNEL_PREFIX + group, f"\t{text}")
    finally:
        await client.aclose()


async def eventually(condition, within: float = 10.0) -> None:
    """Until ``condition()`` (a plain function, or a coroutine function) holds."""
    async with asyncio.timeout(within):
        while True:
            held = condition()
            if asyncio.iscoroutine(held):
                held = await held
            if held:
                return
            await asyncio.sleep(0.05)


async def test_subscribers_are_told_when_redis_comes_back_and_hear_messages_again(
    private_redis,
):
    hub = Hub(private_redis.url)
    subscriber = Recorder()
    try:
        await hub.join("g", subscriber)
        await asyncio.to_thread(private_redis.kill)
        await asyncio.to_thread(private_redis.start)
        await eventually(lambda: subscriber.reconnections == 1)
        await publish(private_redis.url, "g", '"after"')
        await eventually(lambda: [i.text for i in subscriber.items] == ['"after"'])
    finally:
        await hub.close()


async def test_while_redis_is_away_a_join_is_refused_at_once_even_for_a_subscribed_group(
    private_redis,
):
    hub = Hub(private_redis.url)
    first, second = Recorder(), Recorder()
    try:
        await hub.join("g", first)
        await asyncio.to_thread(private_redis.kill)
        await eventually(lambda: not hub._connected)
        started = time.monotonic()
        with pytest.raises(redis.ConnectionError):
            await hub.join("g", second)
        assert time.monotonic() - started < 0.5
        assert hub.local_count("g") == 1
        await asyncio.to_thread(private_redis.start)
        await eventually(lambda: hub._connected)
        await hub.join("g", second)
        assert hub.local_count("g") == 2
    finally:
        await hub.close()


async def test_a_group_left_while_redis_was_away_is_not_subscribed_again(private_redis):
    hub = Hub(private_redis.url)
    staying, leaving = Recorder(), Recorder()
    client = redis.asyncio.Redis.from_url(private_redis.url)
    try:
        await hub.join("stay", staying)
        await hub.join("leave", leaving)
        await asyncio.to_thread(private_redis.kill)
        await hub.leave("leave", leaving)  # the UNSUBSCRIBE cannot reach Redis
        await asyncio.to_thread(private_redis.start)
        await eventually(lambda: staying.reconnections == 1)

        async def only_stay_subscribed() -> bool:
            channels = await client.pubsub_channels(CHANNEL_PREFIX + "*")
            return channels == [(CHANNEL_PREFIX + "stay").encode()]

        await eventually(only_stay_subscribed)
        assert leaving.reconnections == 0
    finally:
        await client.aclose()
        await hub.close()
