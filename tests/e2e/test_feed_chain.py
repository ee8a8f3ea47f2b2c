"""clock -> iopin -> buzzer, each in its own process under `runproducers`, watched over Daphne."""

import asyncio
import json
import signal
import subprocess
import sys

import pytest
import websockets

from streams.models import Producer, ProducerKind, Sample
from streams.services import feed_create, producer_create
from tests.conftest import ROOT, server_env
from tests.e2e.clients import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
TICKS = 30


def test_a_viewer_of_the_buzzer_sees_a_buzz_exactly_when_the_pin_flips_to_one(daphne, world):
    clock = feed_create(tenant=world.acme, name="clock", kind="numeric")
    pin = feed_create(tenant=world.acme, name="pin", kind="binary")
    buzz = feed_create(tenant=world.acme, name="buzz", kind="binary", share=True)
    producer_create(feed=pin, kind=ProducerKind.IOPIN, config={"source": str(clock.uuid)})
    buzzer, _ = producer_create(
        feed=buzz, kind=ProducerKind.BUZZER, config={"source": str(pin.uuid)}
    )
    clock_producer, _ = producer_create(
        feed=clock,
        kind=ProducerKind.CLOCK,
        config={"interval_ms": 50, "count": TICKS, "ack_feed": str(pin.uuid)},
    )

    async def watch_buzzer(stop: asyncio.Event) -> list[dict]:
        frames = []
        url = f"{daphne.ws}/ws/feeds/{buzz.uuid}/?key={buzz.share_key}&since=0"
        async with websockets.connect(url) as socket:
            while not stop.is_set():
                try:
                    frame = json.loads(await asyncio.wait_for(socket.recv(), 0.5))
                except TimeoutError:
                    continue
                if frame["type"] == "sample":
                    frames.append(frame)
        return frames

    async def scenario() -> list[dict]:
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch_buzzer(stop))
        await asyncio.sleep(0.5)
        supervisor = await asyncio.to_thread(
            subprocess.Popen,
            [sys.executable, "manage.py", "runproducers"],
            cwd=ROOT,
            env=server_env(),
            stdout=subprocess.DEVNULL,
        )
        try:
            await asyncio.to_thread(
                wait_until,
                lambda: (
                    Producer.objects.get(pk=clock_producer.pk).status.startswith("finished")
                    and Producer.objects.get(pk=buzzer.pk).cursor == TICKS
                ),
                60,
                "the chain to handle every tick",
            )
            await asyncio.sleep(1.0)  # let the last buzz reach the viewer
        finally:
            supervisor.send_signal(signal.SIGTERM)
            await asyncio.to_thread(supervisor.wait, 20)
            stop.set()
        assert supervisor.returncode == 0
        return await watcher

    seen = asyncio.run(scenario())

    ticks = list(Sample.objects.filter(feed=clock).order_by("seq").values_list("value", "ts"))
    pins = list(Sample.objects.filter(feed=pin).order_by("seq").values_list("value", "ts"))
    buzzes = list(Sample.objects.filter(feed=buzz).order_by("seq").values_list("ts", flat=True))
    assert [value for value, _ in ticks] == list(range(1, TICKS + 1))
    # The pin answered every tick, in order, with the tick's ts.
    assert [ts for _, ts in pins] == [ts for _, ts in ticks]
    previous = [(0, None), *pins[:-1]]
    flips = [
        ts for (was, _), (now, ts) in zip(previous, pins, strict=True) if was == 0 and now == 1
    ]
    assert flips, "with 30 ticks and chance 0.5 the pin flips to 1 at least once"
    assert buzzes == flips
    assert [frame["ts"] for frame in seen] == flips
