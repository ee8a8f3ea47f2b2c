"""manage.py recomputestats: a feed's statistics rebuilt from its stored samples."""

import threading
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import close_old_connections

from streams.models import Feed, FeedKind, Sample
from streams.services import feed_create, feed_stats_recompute, samples_append
from streams.stats import BinaryStats, NumericStats
from tenants.models import AuditEntry
from tests.streams.wedged import wedge_with_1e308


def run(*args) -> str:
    out = StringIO()
    call_command("recomputestats", *args, stdout=out)
    return out.getvalue()


def recomputed_from_scratch(feed) -> dict:
    stats = NumericStats() if feed.kind == FeedKind.NUMERIC else BinaryStats()
    for value in Sample.objects.filter(feed=feed).order_by("seq").values_list("value", flat=True):
        stats.add(value)
    return stats.state()


def test_a_wedged_feed_is_healed_and_the_bad_sample_named(globex_feed):
    feed = globex_feed.feed
    samples_append(feed=feed, values=[(2.0, None), (4.0, None)])
    wedge_with_1e308(feed)
    output = run(str(feed.uuid))
    assert "3 samples" in output and "were unusable: mean=1e+308" in output
    assert "left out 1 outside the accepted range (seq 3)" in output
    feed.refresh_from_db()
    assert feed.stats == {"n": 2, "mean": 3.0, "m2": 2.0, "min": 2.0, "max": 4.0}
    assert Sample.objects.get(feed=feed, seq=3).stats == Sample.objects.get(feed=feed, seq=2).stats
    (sample,) = samples_append(feed=feed, values=[(6.0, None)])
    assert (sample.seq, sample.stats["n"], sample.stats["mean"]) == (4, 3, 4.0)
    entry = AuditEntry.objects.get(action="feed.stats_recomputed")
    assert entry.target_uuid == feed.uuid and entry.details["excluded"] == 1


def test_every_sample_gets_the_statistics_right_after_it_again(acme_feed):
    feed = acme_feed.feed
    samples = samples_append(feed=feed, values=[(1, None), (0, None), (1, None), (1, None)])
    expected = {s.seq: s.stats for s in samples}
    Sample.objects.filter(feed=feed).update(stats_json='{"broken":true}')
    Feed.objects.filter(pk=feed.pk).update(stats={"n": 99, "successes": 1})
    result = feed_stats_recompute(feed=feed, chunk_size=3)  # two chunks
    assert (result.samples, result.excluded) == (4, 0)
    assert {s.seq: s.stats for s in Sample.objects.filter(feed=feed)} == expected
    assert Feed.objects.get(pk=feed.pk).stats == {"n": 4, "successes": 3}


def test_after_pruning_the_statistics_cover_the_retained_samples(acme_feed):
    feed = acme_feed.feed
    Feed.objects.filter(pk=feed.pk).update(retention_count=100)
    feed.refresh_from_db()
    samples_append(feed=feed, values=[(0, None)] * 500 + [(1, None)] * 100)
    assert Feed.objects.get(pk=feed.pk).stats == {"n": 600, "successes": 100}
    feed_stats_recompute(feed=feed)
    assert Feed.objects.get(pk=feed.pk).stats == {"n": 100, "successes": 100}


@pytest.mark.django_db(transaction=True)
def test_publishes_during_a_recompute_stay_gap_free_and_are_counted(globex_feed):
    feed = globex_feed.feed
    samples_append(feed=feed, values=[(float(v), None) for v in range(3000)])
    errors = []

    def publish():
        try:
            for value in range(200):
                samples_append(feed=feed, values=[(float(value), None)])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            close_old_connections()

    publisher = threading.Thread(target=publish)
    publisher.start()
    feed_stats_recompute(feed=feed, chunk_size=100)
    publisher.join()
    assert errors == []
    seqs = list(Sample.objects.filter(feed=feed).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, 3201))
    final = Feed.objects.get(pk=feed.pk)
    expected = recomputed_from_scratch(final)
    assert final.stats["n"] == expected["n"] == 3200
    assert final.stats["mean"] == pytest.approx(expected["mean"], rel=1e-12)
    assert final.stats["m2"] == pytest.approx(expected["m2"], rel=1e-9)


def test_by_tenant_or_all_and_nothing_without_a_choice(world, acme_feed, globex_feed):
    other = feed_create(tenant=world.acme, name="second", kind=FeedKind.NUMERIC)
    assert str(other.uuid) in run("--tenant", "acme") and str(acme_feed.feed.uuid) in run(
        "--tenant", "acme"
    )
    assert str(globex_feed.feed.uuid) not in run("--tenant", "acme")
    assert len(run("--all").splitlines()) == 3
    with pytest.raises(CommandError, match="--all"):
        run()
    with pytest.raises(CommandError, match="No tenant 'initech'"):
        run("--tenant", "initech")
    with pytest.raises(CommandError, match="Not a feed UUID"):
        run("not-a-uuid")
    with pytest.raises(CommandError, match="No feed"):
        run("00000000-0000-4000-8000-000000000000")
