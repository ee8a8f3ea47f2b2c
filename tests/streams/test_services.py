import threading

import pytest
from django.db import close_old_connections

from streams.models import Feed, Sample
from streams.services import SampleRejected, sample_inputs_from_frame, samples_append
from streams.stats import BinaryStats


def test_samples_are_numbered_from_one_and_update_the_feed(acme_feed):
    samples = samples_append(feed=acme_feed.feed, values=[(1, None), (0, 5.0), (1, None)])
    assert [s.seq for s in samples] == [1, 2, 3]
    assert samples[1].ts == 5.0
    feed = Feed.objects.get(pk=acme_feed.feed.pk)
    assert feed.last_seq == 3
    assert feed.stats == {"n": 3, "successes": 2}
    assert samples[-1].stats["alpha"] == 4 and samples[-1].stats["beta"] == 3


def test_each_persisted_sample_keeps_the_statistics_after_it(acme_feed):
    samples_append(feed=acme_feed.feed, values=[(1, None), (0, None)])
    first, second = Sample.objects.filter(feed=acme_feed.feed).order_by("seq")
    assert (first.stats["alpha"], first.stats["beta"]) == (3, 2)
    assert (second.stats["alpha"], second.stats["beta"]) == (3, 3)


@pytest.mark.parametrize(
    "frame,code",
    [
        ([1], "bad_frame"),
        ({}, "bad_frame"),
        ({"value": "1"}, "bad_value"),
        ({"value": True}, "bad_value"),
        ({"value": 0.5}, "bad_value"),
        ({"value": 1, "ts": "yesterday"}, "bad_value"),
        ({"values": []}, "bad_frame"),
        ({"values": [1, 2]}, "bad_value"),
        ({"values": [1] * 1001}, "bad_frame"),
    ],
)
def test_bad_frames_for_a_binary_feed_are_rejected_with_a_code(frame, code):
    with pytest.raises(SampleRejected) as info:
        sample_inputs_from_frame("binary", frame)
    assert info.value.code == code


def test_numeric_feeds_take_any_finite_number():
    assert sample_inputs_from_frame("numeric", {"values": [1.5, -2]}) == [
        (1.5, None),
        (-2.0, None),
    ]


@pytest.mark.django_db(transaction=True)
def test_two_producers_racing_on_one_feed_get_a_gap_free_sequence(acme_feed):
    per_writer, writers = 60, 2
    errors = []

    def write(value):
        try:
            for _ in range(per_writer):
                samples_append(feed=acme_feed.feed, values=[(value, None)])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=write, args=(v,)) for v in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    seqs = list(Sample.objects.filter(feed=acme_feed.feed).values_list("seq", flat=True))
    assert sorted(seqs) == list(range(1, per_writer * writers + 1))
    # The final statistics equal those recomputed from the persisted samples.
    recomputed = BinaryStats()
    for value in (
        Sample.objects.filter(feed=acme_feed.feed).order_by("seq").values_list("value", flat=True)
    ):
        recomputed.add(value)
    assert Feed.objects.get(pk=acme_feed.feed.pk).stats == recomputed.state()


def test_retention_keeps_only_the_newest_samples(acme_feed):
    Feed.objects.filter(pk=acme_feed.feed.pk).update(retention_count=100)
    acme_feed.feed.refresh_from_db()
    samples_append(feed=acme_feed.feed, values=[(1, None)] * 600)
    seqs = Sample.objects.filter(feed=acme_feed.feed).values_list("seq", flat=True)
    assert min(seqs) == 501 and max(seqs) == 600
