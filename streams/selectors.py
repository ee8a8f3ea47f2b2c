from __future__ import annotations

import uuid

from django.db.models import QuerySet

from streams import events
from streams.models import Feed, Sample
from streams.stats import accumulator_for


def feeds_for_user(user) -> QuerySet[Feed]:
    """Feeds of every tenant the user belongs to."""
    return Feed.objects.filter(tenant__memberships__user_id=user.pk).select_related("tenant")


def feed_summary(feed: Feed) -> dict:
    return accumulator_for(feed.kind, feed.stats).summary()


def feed_state(feed_id: int) -> events.FeedState:
    """A fresh snapshot of the feed, read now (not from a possibly stale instance)."""
    feed = Feed.objects.get(pk=feed_id)
    return events.feed_state(feed, feed_summary(feed))


def samples_after(feed_id: int, after_seq: int, *, limit: int) -> list[Sample]:
    return list(Sample.objects.filter(feed_id=feed_id, seq__gt=after_seq).order_by("seq")[:limit])


def oldest_seq(feed_id: int) -> int | None:
    return (
        Sample.objects.filter(feed_id=feed_id).order_by("seq").values_list("seq", flat=True).first()
    )


def recent_samples(feed_id: int, *, limit: int) -> list[Sample]:
    rows = Sample.objects.filter(feed_id=feed_id).order_by("-seq")[:limit]
    return list(reversed(rows))


class FeedNotFound(LookupError):
    """No single feed of the tenant matches; the message says why (for the command line)."""


def feed_by_reference(tenant, ref: str) -> Feed:
    """A feed of ``tenant`` named by UUID or by name (names need not be unique: an
    ambiguous one is refused, listing the candidates' UUIDs)."""
    feeds = Feed.objects.filter(tenant=tenant)
    try:
        return feeds.get(uuid=uuid.UUID(ref))
    except (ValueError, Feed.DoesNotExist):
        pass
    matches = list(feeds.filter(name=ref).order_by("pk")[:5])
    if not matches:
        raise FeedNotFound(f"No feed {ref!r} in tenant {tenant.slug!r}.")
    if len(matches) > 1:
        uuids = ", ".join(str(feed.uuid) for feed in matches)
        raise FeedNotFound(
            f"Several feeds of {tenant.slug!r} are named {ref!r}; use a UUID: {uuids}"
        )
    return matches[0]


def sample_rows(
    feed_id: int, *, after_seq: int, through_seq: int, limit: int
) -> list[tuple[int, float, float, str]]:
    """``(seq, value, ts, stats_json)`` of samples in ``(after_seq, through_seq]``, in seq order.

    Keyset pagination on the (feed, seq) unique index: each page costs the same
    however far into the history it starts.
    """
    rows = Sample.objects.filter(feed_id=feed_id, seq__gt=after_seq, seq__lte=through_seq)
    return list(rows.order_by("seq").values_list("seq", "value", "ts", "stats_json")[:limit])
