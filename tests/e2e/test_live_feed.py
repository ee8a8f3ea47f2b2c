"""The real server (Daphne, in its own process) over a real socket."""

import asyncio
import json
import subprocess
import sys
import time

import pytest
import websockets

from tests.conftest import ROOT, server_env
from tests.e2e.clients import next_sample

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_viewer_receives_samples_published_through_the_server(daphne, acme_feed):
    feed = acme_feed.feed

    async def scenario():
        viewer_url = f"{daphne.ws}/ws/feeds/{feed.uuid}/?key={feed.share_key}"
        publish_url = f"{daphne.ws}/ws/feeds/{feed.uuid}/publish/"
        async with websockets.connect(viewer_url) as viewer:
            hello = json.loads(await viewer.recv())
            assert hello["type"] == "hello" and hello["last_seq"] == 0
            async with websockets.connect(
                publish_url, additional_headers={"Authorization": f"Bearer {acme_feed.token}"}
            ) as producer:
                for value in [1, 0, 1]:
                    await producer.send(json.dumps({"value": value}))
                acks = [json.loads(await producer.recv())["seq"] for _ in range(3)]
            samples = [await next_sample(viewer) for _ in range(3)]
        return acks, samples

    acks, samples = asyncio.run(scenario())
    assert acks == [1, 2, 3]
    assert [(s["seq"], s["value"]) for s in samples] == [(1, 1), (2, 0), (3, 1)]
    assert samples[-1]["stats"]["alpha"] == 4 and samples[-1]["stats"]["beta"] == 3


def test_runproducer_command_streams_bernoulli_samples_to_a_viewer(daphne, acme_feed):
    feed = acme_feed.feed
    producer = subprocess.Popen(
        [sys.executable, "manage.py", "runproducer", str(acme_feed.producer.uuid)],
        cwd=ROOT,
        env=server_env(),
        stdout=subprocess.DEVNULL,
    )
    try:

        async def watch():
            url = f"{daphne.ws}/ws/feeds/{feed.uuid}/?key={feed.share_key}"
            async with websockets.connect(url) as viewer:
                hello = json.loads(await viewer.recv())
                frames = [await next_sample(viewer) for _ in range(10)]
            return hello, frames

        hello, frames = asyncio.run(watch())
    finally:
        producer.terminate()
        producer.wait(10)
    assert producer.returncode == 0
    seqs = [f["seq"] for f in frames]
    assert seqs == list(range(hello["last_seq"] + 1, hello["last_seq"] + 11))
    for frame in frames:
        stats = frame["stats"]
        assert stats["alpha"] + stats["beta"] == frame["seq"] + 4


def test_broadcasts_take_the_prepared_frame_path_under_the_real_server(daphne, acme_feed):
    """Samples reach viewers as frames framed once per process (streamsite/server.py)."""
    import urllib.request

    from streamsite import metrics

    feed = acme_feed.feed

    async def scenario():
        url = f"{daphne.ws}/ws/feeds/{feed.uuid}/?key={feed.share_key}"
        async with websockets.connect(url) as viewer:
            await viewer.recv()
            async with websockets.connect(
                f"{daphne.ws}/ws/feeds/{feed.uuid}/publish/?token={acme_feed.token}"
            ) as producer:
                for _ in range(3):
                    await producer.send(json.dumps({"value": 1}))
                    await producer.recv()
            return [await next_sample(viewer) for _ in range(3)]

    assert [s["seq"] for s in asyncio.run(scenario())] == [1, 2, 3]
    deadline = time.monotonic() + 3 * metrics.FLUSH_SECONDS
    while time.monotonic() < deadline:
        body = urllib.request.urlopen(f"{daphne.http}/metrics").read().decode()
        broadcast = [x for x in body.splitlines() if 'frames_out_total{kind="broadcast"}' in x]
        if broadcast and int(broadcast[0].split()[-1]) >= 3:
            return
        time.sleep(0.5)
    raise AssertionError(f"no prepared-frame broadcasts counted:\n{body}")
