"""The ingest writer's group commit, driven directly (no socket)."""

from __future__ import annotations

import asyncio

import pytest

from streams import ingest, services
from streams.ingest import IngestWriter
from streams.models import Sample
from streams.services import SampleRejected

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def transactions(monkeypatch):
    """Each call of samples_append_many (one transaction) as the list of its writes' sizes."""
    calls: list[list[int]] = []
    real = services.samples_append_many

    def counting(*, writes):
        calls.append([len(write[1]) for write in writes])
        return real(writes=writes)

    monkeypatch.setattr(services, "samples_append_many", counting)
    return calls


def stored(feed) -> list[tuple[int, float]]:
    return list(Sample.objects.filter(feed=feed).order_by("seq").values_list("seq", "value"))


async def test_frames_queued_together_commit_in_one_transaction_each_with_its_samples(
    acme_feed, globex_feed, transactions
):
    writer = IngestWriter()
    coin, gauge = acme_feed.feed, globex_feed.feed
    futures = [
        writer.submit(coin, [(1, None)]),
        writer.submit(gauge, [(2.5, None), (3.5, None)]),
        writer.submit(coin, [(0, None), (1, None)]),
    ]
    assert writer.backlog == 3
    results = await asyncio.gather(*futures)
    assert transactions == [[1, 2, 2]]
    assert [[s.seq for s in r] for r in results] == [[1], [1, 2], [2, 3]]
    assert writer.backlog == 0
    assert await asyncio.to_thread(stored, coin) == [(1, 1), (2, 0), (3, 1)]


async def test_one_bad_frame_is_refused_alone_and_the_others_of_its_batch_commit(
    acme_feed, globex_feed, transactions
):
    writer = IngestWriter()
    coin, gauge = acme_feed.feed, globex_feed.feed
    outcomes = await asyncio.gather(
        writer.submit(coin, [(1, None)]),
        writer.submit(gauge, [(1e200, None), (-1e200, None)]),
        writer.submit(coin, [(0, None)]),
        writer.submit(gauge, [(4.0, None)]),
        return_exceptions=True,
    )
    assert len(transactions) == 1
    assert isinstance(outcomes[1], SampleRejected) and outcomes[1].code == "bad_value"
    assert [s.seq for s in outcomes[0]] == [1] and [s.seq for s in outcomes[2]] == [2]
    assert [s.seq for s in outcomes[3]] == [1]  # the refused frame took no number
    assert await asyncio.to_thread(stored, coin) == [(1, 1), (2, 0)]
    assert await asyncio.to_thread(stored, gauge) == [(1, 4.0)]


async def test_a_batch_is_cut_at_the_sample_limit_and_order_is_kept(
    acme_feed, transactions, monkeypatch
):
    monkeypatch.setattr(ingest, "MAX_BATCH_SAMPLES", 4)
    writer = IngestWriter()
    coin = acme_feed.feed
    results = await asyncio.gather(*(writer.submit(coin, [(n % 2, None)] * 3) for n in range(3)))
    assert transactions == [[3], [3], [3]]
    assert [s.seq for r in results for s in r] == list(range(1, 10))


async def test_a_socket_batch_cut_in_two_asks_the_quota_once_and_refuses_past_its_grant(
    world, acme_feed, transactions, monkeypatch
):
    # Three frames of 3 samples against a budget of 7: 3 + 3 are granted, the third is
    # refused. The sample limit cuts them into three transactions; the quota is asked
    # with the first (for all three), and the refused frame never reaches a transaction.
    from tenants import quotas

    monkeypatch.setattr(ingest, "MAX_BATCH_SAMPLES", 4)
    asked: list[list[list[int]]] = []
    real = quotas.take_samples_many

    def recording(asks):
        asked.append([list(ask.sizes) for ask in asks])
        return real(asks)

    monkeypatch.setattr(quotas, "take_samples_many", recording)
    writer = IngestWriter()
    coin = acme_feed.feed
    frames = [[1, 0, 1], [0, 1, 1], [1, 1, 1]]
    futures = writer.submit_counted(
        coin, [([(v, None) for v in values], None) for values in frames], tenant=world.acme, rate=7
    )
    outcomes = await asyncio.gather(*futures, return_exceptions=True)
    assert asked == [[[3, 3, 3]]]
    assert transactions == [[3], [3]]
    assert [s.seq for s in outcomes[0]] + [s.seq for s in outcomes[1]] == list(range(1, 7))
    assert isinstance(outcomes[2], SampleRejected) and outcomes[2].code == "quota_exceeded"
    assert await asyncio.to_thread(stored, coin) == [(1, 1), (2, 0), (3, 1), (4, 0), (5, 1), (6, 1)]


async def test_a_database_error_fails_every_frame_of_its_transaction_and_the_next_commits(
    acme_feed, monkeypatch
):
    real = services.samples_append_many
    failures = iter([True])

    def failing_once(*, writes):
        if next(failures, False):
            from django.db import OperationalError

            raise OperationalError("database is locked")
        return real(writes=writes)

    monkeypatch.setattr(services, "samples_append_many", failing_once)
    writer = IngestWriter()
    coin = acme_feed.feed
    first = await asyncio.gather(
        writer.submit(coin, [(1, None)]), writer.submit(coin, [(1, None)]), return_exceptions=True
    )
    assert all(type(o).__name__ == "OperationalError" for o in first)
    again = await writer.submit(coin, [(0, None)])
    assert [s.seq for s in again] == [1]


# -- pacing: commits close together share the next one (INGEST_COMMIT_INTERVAL_MS) --


def publish(writer: IngestWriter, feed, value: float, socket: object):
    """One frame of one publish socket, as the publish consumer hands it over."""
    (future,) = writer.submit_counted(
        feed, [([(value, None)], None)], tenant=feed.tenant, rate=10_000, source=socket
    )
    return future


@pytest.fixture
def busy(monkeypatch):
    """Pacing from 5 frames a second of other sockets (PACE_MIN_RATE), so that ten
    sockets which each sent a frame in the last second count as many busy ones."""
    monkeypatch.setattr(ingest, "PACE_MIN_RATE", 5.0)


async def _ten_sockets_publish(writer, coin, gauge) -> list[object]:
    sockets = [object() for _ in range(10)]
    await asyncio.gather(
        *(publish(writer, (coin, gauge)[n % 2], n % 2, s) for n, s in enumerate(sockets))
    )
    return sockets


async def test_frames_of_many_sockets_arriving_one_by_one_share_the_next_commit(
    acme_feed, globex_feed, transactions, settings, busy
):
    settings.INGEST_COMMIT_INTERVAL_MS = 300
    writer = IngestWriter()
    coin, gauge = acme_feed.feed, globex_feed.feed
    a, b, *_ = await _ten_sockets_publish(writer, coin, gauge)
    second = publish(writer, coin, 0, a)  # just after that commit: the others may send too
    await asyncio.sleep(0.05)
    third = publish(writer, gauge, 2.5, b)  # 50 ms later, it joins the second
    results = await asyncio.gather(second, third)
    assert transactions == [[1] * 10, [1, 1]]
    assert [[s.seq for s in r] for r in results] == [[6], [6]]


async def test_a_commit_starts_at_once_when_every_active_socket_has_a_frame_waiting(
    acme_feed, globex_feed, transactions, settings, busy
):
    settings.INGEST_COMMIT_INTERVAL_MS = 60_000  # waiting for the interval would time out
    writer = IngestWriter()
    coin, gauge = acme_feed.feed, globex_feed.feed
    sockets = await _ten_sockets_publish(writer, coin, gauge)
    first = publish(writer, coin, 1, sockets[0])
    await asyncio.sleep(0.05)
    rest = [publish(writer, gauge, 1.5, s) for s in sockets[1:]]
    await asyncio.wait_for(asyncio.gather(first, *rest), 10)
    assert transactions == [[1] * 10, [1] * 10]


async def test_a_lone_producer_waiting_for_each_ack_never_waits_for_the_interval(
    acme_feed, transactions, settings
):
    settings.INGEST_COMMIT_INTERVAL_MS = 60_000
    writer = IngestWriter()
    coin, socket = acme_feed.feed, object()
    for n in range(5):
        await asyncio.wait_for(publish(writer, coin, n % 2, socket), 10)
    assert transactions == [[1]] * 5


async def test_a_producer_beside_a_few_quiet_ones_never_waits_for_the_interval(
    acme_feed, globex_feed, transactions, settings
):
    settings.INGEST_COMMIT_INTERVAL_MS = 60_000
    writer = IngestWriter()
    coin, gauge = acme_feed.feed, globex_feed.feed
    fast, *quiet = [object() for _ in range(4)]
    await asyncio.gather(*(publish(writer, gauge, 1.5, s) for s in quiet))
    for n in range(5):  # the quiet ones send far less than PACE_MIN_RATE between them
        await asyncio.wait_for(publish(writer, coin, n % 2, fast), 10)
    assert transactions == [[1, 1, 1]] + [[1]] * 5


async def test_sockets_gone_quiet_are_not_waited_for(
    acme_feed, globex_feed, transactions, settings, busy, monkeypatch
):
    settings.INGEST_COMMIT_INTERVAL_MS = 60_000
    monkeypatch.setattr(ingest, "PACE_ACTIVE_SECONDS", 0.2)
    monkeypatch.setattr(ingest, "PACE_MIN_RATE", 5.0 / 0.2)  # still "ten sockets are busy"
    writer = IngestWriter()
    coin, gauge = acme_feed.feed, globex_feed.feed
    a, *_ = await _ten_sockets_publish(writer, coin, gauge)
    await asyncio.sleep(0.3)  # the others have been quiet for longer than PACE_ACTIVE_SECONDS
    await asyncio.wait_for(publish(writer, coin, 0, a), 10)
    assert transactions == [[1] * 10, [1]]


async def test_a_full_window_of_frames_does_not_wait_for_the_interval(
    acme_feed, globex_feed, transactions, settings, busy
):
    settings.INGEST_COMMIT_INTERVAL_MS = 60_000
    writer = IngestWriter()
    coin, gauge = acme_feed.feed, globex_feed.feed
    a, *_ = await _ten_sockets_publish(writer, coin, gauge)
    first = publish(writer, coin, 0, a)  # waits: the others may be about to send
    await asyncio.sleep(0.05)
    window = writer.submit_counted(
        coin,
        [([(n % 2, None)], None) for n in range(ingest.PACE_FRAMES)],
        tenant=coin.tenant,
        rate=10_000,
        source=a,
    )
    results = await asyncio.wait_for(asyncio.gather(first, *window), 10)
    assert transactions == [[1] * 10, [1] * (ingest.PACE_FRAMES + 1)]
    assert [s.seq for r in results for s in r] == list(range(6, ingest.PACE_FRAMES + 7))


async def test_a_neighbours_frame_waits_at_most_one_interval_beside_a_busy_tenant(
    acme_feed, globex_feed, transactions, settings, busy
):
    settings.INGEST_COMMIT_INTERVAL_MS = 300
    writer = IngestWriter()
    neighbour, hostile = acme_feed.feed, globex_feed.feed
    sockets = await _ten_sockets_publish(writer, hostile, hostile)
    stop = asyncio.Event()

    async def keep_publishing(socket):  # each hostile socket sends again as soon as acked
        while not stop.is_set():
            await publish(writer, hostile, 1.5, socket)

    floods = [asyncio.create_task(keep_publishing(s)) for s in sockets]
    try:
        await asyncio.sleep(0.1)
        stored_frame = await asyncio.wait_for(publish(writer, neighbour, 1, object()), 1.5)
    finally:
        stop.set()
        await asyncio.gather(*floods)
    assert [s.seq for s in stored_frame] == [1]
    assert await asyncio.to_thread(stored, neighbour) == [(1, 1)]
