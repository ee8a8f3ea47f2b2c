"""The hub's publisher thread: order, one pipeline per burst, and an exact flush."""

from __future__ import annotations

import queue
import threading
import time
import uuid

import pytest
import redis
from django.conf import settings

from streamsite.hub import CHANNEL_PREFIX, _Publisher, decode_items


@pytest.fixture
def client():
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def listener(client):
    """A real subscriber to group "pub-test"; ``listener()`` returns the texts heard so far."""
    pubsub = client.pubsub()
    pubsub.subscribe(CHANNEL_PREFIX + "pub-test")
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"
    heard: list[str] = []

    def hear(count: int, timeout: float = 5.0) -> list[str]:
        while len(heard) < count:
            message = pubsub.get_message(timeout=timeout)
            if message is None:
                break
            heard.extend(item.text for item in decode_items(message["data"].decode()))
        return heard

    yield hear
    pubsub.close()


class GatedQueue:
    """The publisher's queue, whose next ``put`` once gated waits for ``opened`` before it
    enqueues (later puts, such as drain's, go straight in)."""

    def __init__(self, inner: queue.SimpleQueue) -> None:
        self.inner = inner
        self.putting = threading.Event()
        self.opened = threading.Event()
        self.gated = False

    def put(self, item) -> None:
        if self.gated:
            self.gated = False
            self.putting.set()
            self.opened.wait(10)
        self.inner.put(item)

    def get(self, timeout=None):
        return self.inner.get(timeout=timeout)

    def get_nowait(self):
        return self.inner.get_nowait()

    def empty(self) -> bool:
        return self.inner.empty()


def test_flush_waits_for_a_put_that_lands_while_the_previous_batch_is_finishing(client, listener):
    """The old publisher cleared an "idle" event, then queued; its thread, finding the
    queue empty after a batch, could set the event in between, and flush said done with
    the put still to send. Here the put begins while batch "a" is being sent and is
    queued only after that batch is done."""
    sending, sent = threading.Event(), threading.Event()
    batches = iter([True])

    def client_holding_the_first_batch() -> redis.Redis:  # runs in the publisher thread
        if next(batches, False):
            sending.set()
            sent.wait(10)
        return client

    publisher = _Publisher(client_holding_the_first_batch)
    gate = GatedQueue(publisher._queue)
    publisher._queue = gate
    publisher.start()
    publisher.put([("pub-test", [(None, '"a"')])])
    assert sending.wait(5)
    gate.gated = True
    putter = threading.Thread(target=publisher.put, args=([("pub-test", [(None, '"b"')])],))
    putter.start()
    assert gate.putting.wait(5)  # the put of "b" has begun; "b" is not queued yet
    sent.set()  # batch "a" goes out; the thread then finds the queue empty
    assert listener(1) == ['"a"']
    assert not publisher.drain(0.5), "flush reported done with a put outstanding"
    assert publisher.backlog == 1
    gate.opened.set()
    putter.join(5)
    assert publisher.drain(5)
    assert publisher.backlog == 0
    assert listener(2) == ['"a"', '"b"']


def test_messages_leave_in_the_order_they_were_put_and_flush_covers_them_all(client, listener):
    publisher = _Publisher(lambda: client)
    publisher.start()
    for n in range(200):
        publisher.put([("pub-test", [(n, str(n))])])
    assert publisher.drain(10)
    assert listener(200) == [str(n) for n in range(200)]


def test_a_failed_publish_still_counts_as_done_and_the_next_one_goes_out(client, listener):
    broken = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    clients = iter([broken, client])
    publisher = _Publisher(lambda: next(clients))
    publisher.start()
    publisher.put([("pub-test", [(None, '"lost"')])])
    assert publisher.drain(10)
    publisher.put([("pub-test", [(None, '"sent"')])])
    assert publisher.drain(10)
    assert listener(1) == ['"sent"']


def test_counters_are_summed_and_written_within_a_second_or_at_flush(client, listener):
    key = f"test:counter:{uuid.uuid4()}"
    publisher = _Publisher(lambda: client)
    publisher.start()
    for n in range(50):
        publisher.put([("pub-test", [(n, str(n))])], [(key, 2, 60)])
    assert listener(50) == [str(n) for n in range(50)]  # messages never wait for counters
    deadline = time.monotonic() + 5
    while client.get(key) != b"100" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.get(key) == b"100"
    assert 0 < client.ttl(key) <= 60
    publisher.put([], [(key, 5, 60)])
    assert publisher.drain(5)  # flush writes what is summed at once
    assert client.get(key) == b"105"
    publisher.put([], [(key, 1, 60)])
    publisher.put([], [(key, 1, 60)])
    # Nothing else is put, and nobody flushes: the thread wakes for the counters itself.
    deadline = time.monotonic() + 5
    while client.get(key) != b"107" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.get(key) == b"107"


def test_a_reply_error_fails_that_batch_alone(client, listener):
    """A command Redis refuses (here INCRBY on a string) fails its batch, which counts as
    done; the connection stays usable and the next message goes out."""
    key = f"test:counter:{uuid.uuid4()}"
    client.set(key, "not a number")
    publisher = _Publisher(lambda: client)
    publisher.start()
    publisher.put([], [(key, 1, 60)])
    assert publisher.drain(5)
    publisher.put([("pub-test", [(None, '"after"')])])
    assert publisher.drain(5)
    assert listener(1) == ['"after"']
