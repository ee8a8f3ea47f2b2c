"""One pipeline for the Redis commands of one event-loop pass (streamsite.batch), on real Redis."""

import asyncio

import pytest
import redis
import redis.asyncio as aredis
from django.conf import settings

from streamsite.batch import CommandBatch


class CountingClient:
    """A real client that counts the pipelines it opens (round trips)."""

    def __init__(self, client: aredis.Redis) -> None:
        self.client = client
        self.pipelines = 0

    def pipeline(self, **kwargs):
        self.pipelines += 1
        return self.client.pipeline(**kwargs)


@pytest.fixture
async def client():
    real = aredis.Redis.from_url(settings.REDIS_URL)
    yield CountingClient(real)
    await real.delete("batch:a", "batch:b", "batch:s")
    await real.aclose()


async def test_callers_of_one_pass_share_one_pipeline_and_get_their_own_replies(client):
    batch = CommandBatch(client)

    def incr(key):
        return lambda pipe: (pipe.incr(key), pipe.get(key))

    replies = await asyncio.gather(*(batch.send(incr("batch:a"), 2) for _ in range(50)))
    assert client.pipelines == 1
    # In order, as if one after the other: the i-th caller saw the counter at i.
    assert [int(counter) for counter, _ in replies] == list(range(1, 51))
    assert all(int(counter) == int(read) for counter, read in replies)
    # A later pass is a pipeline of its own.
    assert await batch.send(incr("batch:b"), 2) == [1, b"1"]
    assert client.pipelines == 2


async def test_a_failing_command_fails_its_caller_alone(client):
    batch = CommandBatch(client)
    await client.client.set("batch:s", "not a set")
    good = batch.send(lambda pipe: pipe.incr("batch:a"), 1)
    bad = batch.send(lambda pipe: pipe.zadd("batch:s", {"m": 1}), 1)  # wrong type
    also_good = batch.send(lambda pipe: pipe.incr("batch:a"), 1)
    assert await good == [1]
    with pytest.raises(redis.ResponseError):
        await bad
    assert await also_good == [2]


async def test_without_redis_every_caller_gets_the_error():
    gone = aredis.Redis(port=1, socket_connect_timeout=0.5)  # nothing listens on port 1
    batch = CommandBatch(gone)
    callers = [batch.send(lambda pipe: pipe.ping(), 1) for _ in range(3)]
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(r, redis.ConnectionError | OSError) for r in results)
    await gone.aclose()
