"""Viewers that go away and come back, against the real server and a running producer."""

import asyncio
import http.client
import json
import subprocess
import sys
import time

import pytest
import websockets

from streams.models import Sample
from streams.stats import BinaryStats
from tests.conftest import ROOT, Daphne, server_env
from tests.e2e.clients import next_sample

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def bernoulli(acme_feed):
    """The feed's Bernoulli producer (p = 0.72, every 100 ms) running as `runproducer`."""
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runproducer", str(acme_feed.producer.uuid)],
        cwd=ROOT,
        env=server_env(),
        stdout=subprocess.DEVNULL,
    )
    yield acme_feed
    process.terminate()
    process.wait(10)


def recomputed_posterior(feed, up_to_seq: int) -> dict:
    stats = BinaryStats()
    for value in (
        Sample.objects.filter(feed=feed, seq__lte=up_to_seq)
        .order_by("seq")
        .values_list("value", flat=True)
    ):
        stats.add(value)
    return stats.summary()


def test_viewer_cut_off_for_10_s_resumes_with_every_missed_seq_exactly_once(daphne, bernoulli):
    feed = bernoulli.feed
    base = f"{daphne.ws}/ws/feeds/{feed.uuid}/?key={feed.share_key}"

    async def scenario():
        async with websockets.connect(base) as socket:
            before = [await next_sample(socket) for _ in range(5)]
        await asyncio.sleep(10)  # cut off while the producer keeps going (~100 samples)
        async with websockets.connect(f"{base}&since={before[-1]['seq']}") as socket:
            after = [await next_sample(socket) for _ in range(110)]
        return before, after

    before, after = asyncio.run(scenario())
    seqs = [frame["seq"] for frame in before + after]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # no gap, no duplicate
    # What the viewer shows is what the persisted samples say.
    last = after[-1]
    assert last["stats"] == recomputed_posterior(feed, last["seq"])


def test_tailfeed_retries_while_the_server_is_away_and_resumes_without_a_gap(bernoulli):
    feed = bernoulli.feed
    server = Daphne().start()
    tail = subprocess.Popen(
        [sys.executable, "manage.py", "tailfeed", str(feed.uuid), "--url", server.http,
         "--count", "50", "--retry-seconds", "1"],
        cwd=ROOT, env=server_env(), stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(2)
        server.stop()
        time.sleep(3)
        server.start()
        output, _ = tail.communicate(timeout=60)
    finally:
        tail.kill()
        server.stop()
    lines = output.splitlines()
    assert any("server away" in line for line in lines)
    samples = [
        dict(p.split("=") for p in line.split()) for line in lines if line.startswith("seq=")
    ]
    seqs = [int(s["seq"]) for s in samples]
    assert len(seqs) == 50 and seqs == list(range(seqs[0], seqs[0] + 50))
    last = samples[-1]
    expected = recomputed_posterior(feed, seqs[-1])
    assert (int(last["alpha"]), int(last["beta"])) == (expected["alpha"], expected["beta"])


def read_events(port: int, path: str, count: int, headers=None) -> list[tuple[str | None, dict]]:
    """(id, frame) of the first ``count`` sample events of an SSE stream."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type").startswith("text/event-stream")
    events, event_id = [], None
    while len(events) < count:
        line = response.fp.readline().decode().rstrip("\n")
        if line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("data: "):
            frame = json.loads(line[6:])
            if frame["type"] == "sample":
                events.append((event_id, frame))
            event_id = None
    connection.close()
    return events


def test_server_sent_events_resume_with_last_event_id(daphne, bernoulli):
    feed = bernoulli.feed
    path = f"/feeds/{feed.uuid}/events/?key={feed.share_key}"
    first = read_events(daphne.port, path, 3)
    assert [event_id for event_id, _ in first] == [str(f["seq"]) for _, f in first]
    time.sleep(1)
    resumed = read_events(daphne.port, path, 5, headers={"Last-Event-ID": first[-1][0]})
    seqs = [frame["seq"] for _, frame in first + resumed]
    assert seqs == list(range(seqs[0], seqs[0] + 8))


def test_server_sent_events_refuse_a_stranger(daphne, acme_feed):
    connection = http.client.HTTPConnection("127.0.0.1", daphne.port, timeout=10)
    connection.request("GET", f"/feeds/{acme_feed.feed.uuid}/events/?key=wrong")
    assert connection.getresponse().status == 404


def test_a_resumed_event_stream_loses_nothing_wherever_it_drops(daphne, acme_feed):
    """Drop after every event position of a resumed stream, as EventSource would, and
    resume with the last id received: every sample after the first resume point arrives."""
    from streams.services import samples_append

    feed = acme_feed.feed
    samples_append(feed=feed, values=[(n % 2, None) for n in range(20)])
    path = f"/feeds/{feed.uuid}/events/?key={feed.share_key}"
    last_id, received = "5", set()
    for cut in range(1, 40):
        connection = http.client.HTTPConnection("127.0.0.1", daphne.port, timeout=10)
        connection.request("GET", path, headers={"Last-Event-ID": last_id})
        response = connection.getresponse()
        events, event_id = 0, None
        while events < cut:
            line = response.fp.readline().decode().rstrip("\n")
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                frame = json.loads(line[6:])
                if event_id is not None:
                    assert int(event_id) <= int(frame.get("seq", last_id)), frame
                    last_id = event_id  # what EventSource keeps
                if frame["type"] == "sample":
                    received.add(frame["seq"])
                events, event_id = events + 1, None
        connection.close()
        if last_id == "20":
            break
    assert received == set(range(6, 21))
