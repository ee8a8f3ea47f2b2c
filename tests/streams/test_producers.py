import random
import threading

import pytest

from streams.models import Feed, Producer, ProducerKind, Sample
from streams.producers import BernoulliLoop, ConfigError, run_until_stopped, validate_config
from streams.services import producer_create


def test_bernoulli_step_persists_one_sample_and_asks_for_the_interval(acme_feed):
    loop = BernoulliLoop(acme_feed.producer, rng=random.Random(1))
    assert loop.step() == pytest.approx(0.1)
    sample = Sample.objects.get(feed=acme_feed.feed)
    assert sample.seq == 1 and sample.value in (0, 1)


def test_bernoulli_mean_approaches_p(acme_feed):
    loop = BernoulliLoop(acme_feed.producer, rng=random.Random(3))
    for _ in range(400):
        loop.step()
    feed = Feed.objects.get(pk=acme_feed.feed.pk)
    assert feed.last_seq == 400
    assert 0.65 < feed.stats["successes"] / 400 < 0.79


@pytest.mark.parametrize("config", [{"p": 1.5}, {"p": "high"}, {"interval_ms": 0}])
def test_bad_bernoulli_config_is_refused(config):
    with pytest.raises(ConfigError):
        validate_config(ProducerKind.BERNOULLI, config)


def test_defaults_are_p_072_every_100_ms():
    assert validate_config(ProducerKind.BERNOULLI, {}) == {"p": 0.72, "interval_ms": 100}


@pytest.mark.django_db(transaction=True)
def test_loop_stops_between_steps_and_marks_the_producer_seen(acme_feed):
    producer, _ = producer_create(
        feed=acme_feed.feed, kind=ProducerKind.BERNOULLI, config={"interval_ms": 5}
    )
    loop = BernoulliLoop(producer)
    stop = threading.Event()
    steps = []

    def on_step():
        steps.append(1)
        if len(steps) == 10:
            stop.set()

    run_until_stopped(loop, stop, on_step=on_step)
    assert Feed.objects.get(pk=acme_feed.feed.pk).last_seq == 10
    assert Producer.objects.get(pk=producer.pk).last_seen_at is not None


def chain(world):
    """clock -> iopin -> buzzer feeds and producers in tenant acme."""
    from streams.services import feed_create

    clock = feed_create(tenant=world.acme, name="clock", kind="numeric", share=True)
    pin = feed_create(tenant=world.acme, name="pin", kind="binary", share=True)
    buzz = feed_create(tenant=world.acme, name="buzz", kind="binary", share=True)
    clock_p, _ = producer_create(
        feed=clock, kind=ProducerKind.CLOCK, config={"interval_ms": 5, "count": 3}
    )
    pin_p, _ = producer_create(
        feed=pin, kind=ProducerKind.IOPIN, config={"source": str(clock.uuid), "chance": 0.5}
    )
    buzz_p, _ = producer_create(
        feed=buzz, kind=ProducerKind.BUZZER, config={"source": str(pin.uuid)}
    )
    return clock, pin, buzz, clock_p, pin_p, buzz_p


def test_clock_ticks_count_times_then_finishes(world):
    from streams.producers import ClockLoop, ProducerFinished

    clock, *_, clock_p, _, _ = chain(world)
    loop = ClockLoop(clock_p)
    for _ in range(3):
        loop.step()
    with pytest.raises(ProducerFinished):
        loop.step()
    values = list(Sample.objects.filter(feed=clock).order_by("seq").values_list("value", flat=True))
    assert values == [1, 2, 3]


def test_iopin_publishes_one_state_per_tick_with_the_ticks_ts_and_resumes_at_its_cursor(world):
    from streams.producers import ClockLoop, IoPinLoop

    clock, pin, _, clock_p, pin_p, _ = chain(world)
    ticker = ClockLoop(clock_p)
    ticker.step()
    ticker.step()
    IoPinLoop(pin_p, rng=random.Random(5)).step()
    ticker.step()
    # A restarted pin (new loop) carries on after the ticks it already handled.
    pin_p.refresh_from_db()
    assert pin_p.cursor == 2
    IoPinLoop(pin_p, rng=random.Random(6)).step()
    tick_ts = list(Sample.objects.filter(feed=clock).order_by("seq").values_list("ts", flat=True))
    pin_ts = list(Sample.objects.filter(feed=pin).order_by("seq").values_list("ts", flat=True))
    assert pin_ts == tick_ts


def test_buzzer_buzzes_exactly_when_the_pin_flips_to_one(world):
    from streams.producers import BuzzerLoop
    from streams.services import samples_append

    _, pin, buzz, _, _, buzz_p = chain(world)
    states = [0, 1, 1, 0, 1, 0, 0, 1]
    for index, state in enumerate(states):
        samples_append(feed=pin, values=[(state, 1000.0 + index)])
    BuzzerLoop(buzz_p).step()
    buzz_ts = list(Sample.objects.filter(feed=buzz).order_by("seq").values_list("ts", flat=True))
    assert buzz_ts == [1001.0, 1004.0, 1007.0]


def test_a_producer_cannot_listen_to_another_tenants_feed(world, globex_feed):
    from streams.producers import IoPinLoop
    from streams.services import feed_create

    pin = feed_create(tenant=world.acme, name="pin", kind="binary")
    spy, _ = producer_create(
        feed=pin, kind=ProducerKind.IOPIN, config={"source": str(globex_feed.feed.uuid)}
    )
    with pytest.raises(ConfigError):
        IoPinLoop(spy)
