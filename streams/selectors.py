from __future__ import annotations

from django.db.models import QuerySet

from streams import events
from streams.models import Feed, Sample
from streams.stats import accumulator_for


def feeds_for_user(user) -> QuerySet[Feed]:
    """Feeds of every tenant the user belongs to."""
    return Feed.objects.filter(tenant__memberships__user_id=user.pk).select_related("tenant")


def feed_summary(feed: Feed) -> dict:
    return accumulator_for(feed.kind, feed.stats).summary()


def feed_hello(feed_id: int) -> events.HelloFrame:
    """A fresh snapshot of the feed, read now (not from a possibly stale instance)."""
    feed = Feed.objects.get(pk=feed_id)
    return events.hello_frame(feed, feed_summary(feed))


def samples_after(feed_id: int, after_seq: int, *, limit: int) -> list[Sample]:
    return list(Sample.objects.filter(feed_id=feed_id, seq__gt=after_seq).order_by("seq")[:limit])


def oldest_seq(feed_id: int) -> int | None:
    return (
        Sample.objects.filter(feed_id=feed_id).order_by("seq").values_list("seq", flat=True).first()
    )


def recent_samples(feed_id: int, *, limit: int) -> list[Sample]:
    rows = Sample.objects.filter(feed_id=feed_id).order_by("-seq")[:limit]
    return list(reversed(rows))


def sample_rows(
    feed_id: int, *, after_seq: int, through_seq: int, limit: int
) -> list[tuple[int, float, float, str]]:
    """``(seq, value, ts, stats_json)`` of samples in ``(after_seq, through_seq]``, in seq order.

    Keyset pagination on the (feed, seq) unique index: each page costs the same
    however far into the history it starts.
    """
    rows = Sample.objects.filter(feed_id=feed_id, seq__gt=after_seq, seq__lte=through_seq)
    return list(rows.order_by("seq").values_list("seq", "value", "ts", "stats_json")[:limit])
