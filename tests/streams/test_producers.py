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
