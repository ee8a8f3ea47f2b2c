"""A feed as the reviewer left it before values were range-checked."""

from __future__ import annotations

from streams.models import Feed, Sample


def wedge_with_1e308(feed: Feed) -> None:
    """Store what the old code stored for ``{"value": 1e308}``: finite statistics that
    overflowed on the next sample (its variance), whatever that sample was."""
    feed.refresh_from_db()
    Sample.objects.create(
        feed=feed,
        seq=feed.last_seq + 1,
        value=1e308,
        ts=1.0,
        stats_json='{"n":1,"mean":1e308,"variance":0.0,"min":1e308,"max":1e308}',
    )
    Feed.objects.filter(pk=feed.pk).update(
        last_seq=feed.last_seq + 1,
        stats={"n": 1, "mean": 1e308, "m2": 0.0, "min": 1e308, "max": 1e308},
    )
    feed.refresh_from_db()
