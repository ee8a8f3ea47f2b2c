import threading

import pytest
from django.db import DatabaseError, close_old_connections

from streams.models import Feed, Sample
from streams.services import (
    SampleRejected,
    sample_inputs_from_frame,
    samples_append,
    samples_append_many,
)
from streams.stats import BinaryStats
from tests.streams.wedged import wedge_with_1e308


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


# -- one write's failure is its own ------------------------------------------


def stored(feed) -> list[tuple[int, float]]:
    return list(Sample.objects.filter(feed=feed).order_by("seq").values_list("seq", "value"))


@pytest.mark.parametrize(
    "frame",
    [{"value": 1e200}, {"values": [1e200, -1e200]}, {"value": -1e308}, {"value": 1, "ts": 1.7e12}],
)
def test_values_and_times_outside_the_documented_range_are_refused_naming_it(frame):
    with pytest.raises(SampleRejected) as info:
        sample_inputs_from_frame("numeric", frame)
    assert info.value.code == "bad_value"
    assert "1e100" in info.value.message or "0 to 1e11" in info.value.message


def test_values_at_the_limit_are_taken():
    assert sample_inputs_from_frame("numeric", {"values": [1e100, -1e100]}) == [
        (1e100, None),
        (-1e100, None),
    ]


def test_a_poison_write_is_refused_alone_and_the_other_tenants_writes_commit_gap_free(
    acme_feed, globex_feed
):
    """Poison that slipped past validation (a producer of our own, or a value the
    checks missed) used to roll back the whole group commit."""
    victim, attacker = acme_feed.feed, globex_feed.feed
    outcomes = samples_append_many(
        writes=[
            (victim, [(1, None)]),
            (attacker, [(1e200, None), (-1e200, None)]),
            (victim, [(0, None), (1, None)]),
            (attacker, [(5.0, None), (1e308, None)]),  # all or nothing: 5.0 is not kept
            (attacker, [(2.0, None)]),
        ]
    )
    assert [isinstance(o, SampleRejected) for o in outcomes] == [False, True, False, True, False]
    assert {outcomes[1].code, outcomes[3].code} == {"bad_value"}
    assert "1e100" in outcomes[1].message
    assert [s.seq for s in outcomes[0] + outcomes[2]] == [1, 2, 3]
    assert [s.seq for s in outcomes[4]] == [1]
    assert stored(victim) == [(1, 1), (2, 0), (3, 1)]
    assert stored(attacker) == [(1, 2.0)]
    attacker.refresh_from_db()
    assert attacker.last_seq == 1
    assert attacker.stats == {"n": 1, "mean": 2.0, "m2": 0.0, "min": 2.0, "max": 2.0}


def test_samples_append_raises_the_refusal_and_stores_nothing(globex_feed):
    with pytest.raises(SampleRejected) as info:
        samples_append(feed=globex_feed.feed, values=[(1.0, None), (1e200, None)])
    assert info.value.code == "bad_value"
    assert stored(globex_feed.feed) == []


def test_a_feed_wedged_before_the_fix_is_refused_with_a_clear_error_and_others_commit(
    acme_feed, globex_feed, caplog
):
    wedge_with_1e308(globex_feed.feed)
    outcomes = samples_append_many(
        writes=[(globex_feed.feed, [(1.0, None)]), (acme_feed.feed, [(1, None)])]
    )
    refused, committed = outcomes
    assert refused.code == "bad_value"
    assert "recomputestats" in refused.message and "mean=1e+308" in refused.message
    assert [s.seq for s in committed] == [1]
    assert Feed.objects.get(pk=globex_feed.feed.pk).last_seq == 1
    # The operator hears of it once per feed, not once per frame.
    samples_append_many(writes=[(globex_feed.feed, [(1.0, None)])] * 3)
    warnings = [r for r in caplog.records if "recomputestats" in r.getMessage()]
    assert len(warnings) == 1 and str(globex_feed.feed.uuid) in warnings[0].getMessage()


def test_a_row_the_database_refuses_is_refused_alone(acme_feed, globex_feed):
    """A stray row at the attacker's next seq: the insert breaks the unique
    constraint, the batch is written again one frame per savepoint."""
    Sample.objects.create(feed=globex_feed.feed, seq=1, value=0.0, ts=1.0, stats_json="{}")
    outcomes = samples_append_many(
        writes=[
            (acme_feed.feed, [(1, None)]),
            (globex_feed.feed, [(3.0, None)]),
            (acme_feed.feed, [(0, None)]),
        ]
    )
    assert isinstance(outcomes[1], SampleRejected) and outcomes[1].code == "bad_value"
    assert [s.seq for s in outcomes[0] + outcomes[2]] == [1, 2]
    assert stored(acme_feed.feed) == [(1, 1), (2, 0)]
    assert stored(globex_feed.feed) == [(1, 0.0)]
    assert Feed.objects.get(pk=globex_feed.feed.pk).last_seq == 0


def test_a_database_error_that_is_not_about_one_row_fails_the_whole_batch(
    acme_feed, globex_feed, monkeypatch
):
    monkeypatch.setattr(
        "streams.services._INSERT_SAMPLE", "INSERT INTO no_such_table VALUES (%s, %s, %s, %s, %s)"
    )
    with pytest.raises(DatabaseError):
        samples_append_many(
            writes=[(acme_feed.feed, [(1, None)]), (globex_feed.feed, [(1.0, None)])]
        )
    assert stored(acme_feed.feed) == [] and stored(globex_feed.feed) == []
    assert Feed.objects.get(pk=acme_feed.feed.pk).last_seq == 0
