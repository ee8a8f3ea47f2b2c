"""The hub against a Redis that dies and comes back (a private redis-server per test)."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from streamsite.hub import CHANNEL_PREFIX, Item
from streamsite.redisproc import PrivateRedis
from streamsite.runtime import Runtime


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
    runtime = Runtime(private_redis.url)
    hub = runtime.hub
    subscriber = Recorder()
    try:
        await hub.join("g", subscriber)
        await asyncio.to_thread(private_redis.kill)
        await asyncio.to_thread(private_redis.start)
        await eventually(lambda: subscriber.reconnections == 1)
        await publish(private_redis.url, "g", '"after"')
        await eventually(lambda: [i.text for i in subscriber.items] == ['"after"'])
    finally:
        await runtime.close()


async def test_while_redis_is_away_a_join_is_refused_at_once_even_for_a_subscribed_group(
    private_redis,
):
    runtime = Runtime(private_redis.url)
    hub = runtime.hub
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
        await runtime.close()


async def test_a_hub_whose_reader_lost_redis_reports_it(private_redis):
    runtime = Runtime(private_redis.url)
    hub = runtime.hub
    try:
        await hub.join("g", Recorder())
        assert hub.problem() is None
        await asyncio.to_thread(private_redis.kill)
        await eventually(lambda: hub.problem() is not None)
        assert hub.problem() == "reader lost Redis"
        assert hub.status()["connected"] is False
    finally:
        await runtime.close()


async def test_a_group_left_while_redis_was_away_is_not_subscribed_again(private_redis):
    runtime = Runtime(private_redis.url)
    hub = runtime.hub
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
        await runtime.close()


# -- without faults: the suite's Redis ------------------------------------------


@pytest.fixture
async def runtime():
    from django.conf import settings

    runtime = Runtime(settings.REDIS_URL)
    yield runtime
    await runtime.close()


async def subscribed(client, group: str) -> int:
    """How many subscriptions Redis counts for the group's channel."""
    [(_, count)] = await client.pubsub_numsub(CHANNEL_PREFIX + group)
    return count


async def test_a_group_is_subscribed_once_however_many_join_and_until_the_last_leaves(runtime):
    hub, first, second = runtime.hub, Recorder(), Recorder()
    await hub.join("refs", first)
    await hub.join("refs", second)
    assert hub.local_count("refs") == 2
    assert await subscribed(runtime.redis, "refs") == 1
    await hub.leave("refs", first)
    await hub.leave("refs", first)  # twice: no effect
    assert hub.local_count("refs") == 1
    assert await subscribed(runtime.redis, "refs") == 1
    await hub.leave("refs", second)
    assert hub.local_count("refs") == 0

    async def unsubscribed() -> bool:
        return await subscribed(runtime.redis, "refs") == 0

    await eventually(unsubscribed)


async def test_a_message_reaches_every_subscriber_of_its_group_decoded_once(runtime):
    hub, watcher, other_watcher, stranger = runtime.hub, Recorder(), Recorder(), Recorder()
    await hub.join("news", watcher)
    await hub.join("news", other_watcher)
    await hub.join("elsewhere", stranger)
    await runtime.redis.publish(CHANNEL_PREFIX + "news", '7\t{"n":7}\n\t"note"')
    await eventually(lambda: len(watcher.items) == 2 and len(other_watcher.items) == 2)
    assert [(i.seq, i.text) for i in watcher.items] == [(7, '{"n":7}'), (None, '"note"')]
    assert watcher.items[0] is other_watcher.items[0]  # one decode per process
    assert stranger.items == []
    for subscriber, group in ((watcher, "news"), (other_watcher, "news"), (stranger, "elsewhere")):
        await hub.leave(group, subscriber)


async def test_a_subscriber_that_raises_does_not_stop_delivery_to_the_others(runtime):
    class Broken(Recorder):
        async def hub_deliver(self, items):
            raise RuntimeError("broken viewer")

    hub, broken, healthy = runtime.hub, Broken(), Recorder()
    await hub.join("mixed", broken)
    await hub.join("mixed", healthy)
    await runtime.redis.publish(CHANNEL_PREFIX + "mixed", '\t"x"')
    await runtime.redis.publish(CHANNEL_PREFIX + "mixed", '\t"y"')
    await eventually(lambda: [i.text for i in healthy.items] == ['"x"', '"y"'])
    await hub.leave("mixed", broken)
    await hub.leave("mixed", healthy)


async def test_a_subscribed_hub_reports_its_reader_and_when_it_last_heard_from_redis(runtime):
    hub = runtime.hub
    assert hub.problem() is None and hub.status()["reader"] == "idle"
    subscriber = Recorder()
    await hub.join("status", subscriber)
    status = hub.status()
    assert status["groups"] == 1 and status["unconfirmed"] == 0
    assert status["reader"] == "running" and status["connected"] is True
    assert 0 <= status["last_heard_seconds"] < 5
    assert hub.problem() is None
    await hub.leave("status", subscriber)


async def test_a_quiet_subscription_is_kept_heard_by_pings(runtime, monkeypatch):
    from streamsite import hub as hub_module

    monkeypatch.setattr(hub_module, "PING_EVERY_SECONDS", 0.2)
    subscriber = Recorder()
    await runtime.hub.join("quiet", subscriber)
    for _ in range(5):  # a second and more with no message on the group
        await asyncio.sleep(0.3)
        assert runtime.hub.status()["last_heard_seconds"] < 1.0
    await runtime.hub.leave("quiet", subscriber)


async def test_a_hub_whose_reader_stopped_with_groups_subscribed_reports_it(runtime):
    subscriber = Recorder()
    await runtime.hub.join("stuck", subscriber)
    runtime.hub._reader.cancel()  # as if the reader had died
    await eventually(lambda: runtime.hub._reader.done())
    assert runtime.hub.problem() == "subscribed groups but no reader"
    await runtime.hub.leave("stuck", subscriber)
    assert runtime.hub.problem() is None
