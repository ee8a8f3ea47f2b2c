"""Live events of feeds: group names, frame shapes, and sending after commit.

This is the only module of the streams app that talks to the hub. A sample is
encoded once, here, by the process that wrote it; every viewer in every process
receives those same bytes.
"""

from __future__ import annotations

import json
import threading
import uuid as uuid_module
from collections.abc import Sequence
from typing import Any, TypedDict

from django.db import transaction

from streams.models import Feed, FeedKind, Sample
from streamsite import frames, hub, metrics


class FeedState(TypedDict):
    """A feed as its ``hello`` shows it, before the viewer count is added (frames.hello)."""

    feed: frames.FeedInfo
    last_seq: int
    stats: dict[str, Any]


def feed_group(feed_uuid: uuid_module.UUID | str) -> str:
    return f"feed.{feed_uuid}"


def wire_value(kind: str, value: float) -> float | int:
    return int(value) if kind == FeedKind.BINARY else value


def sample_frame(kind: str, sample: Sample) -> frames.SampleFrame:
    return json.loads(
        sample_frame_text(kind, sample.seq, sample.value, sample.ts, sample.stats_json)
    )


def sample_frame_text(kind: str, seq: int, value: float, ts: float, stats_json: str) -> str:
    """The encoded ``sample`` frame (frames.sample_text), with the value as the feed kind shows it."""
    return frames.sample_text(seq=seq, value=wire_value(kind, value), ts=ts, stats_json=stats_json)


def feed_state(feed: Feed, summary: dict[str, Any]) -> FeedState:
    return {
        "feed": {"uuid": str(feed.uuid), "name": feed.name, "kind": feed.kind},
        "last_seq": feed.last_seq,
        "stats": summary,
    }


def hello_frame(state: FeedState, *, watching: int) -> frames.HelloFrame:
    return frames.hello(**state, watching=watching)


def samples_published(feed: Feed, samples: Sequence[Sample]) -> None:
    """Broadcast the samples to every viewer once the transaction commits.

    Everything a transaction broadcasts leaves in one Redis round trip after the
    commit (a batch that writes to 200 feeds makes one trip, not 200).
    """
    items = [
        (s.seq, sample_frame_text(feed.kind, s.seq, s.value, s.ts, s.stats_json)) for s in samples
    ]
    _after_commit(feed_group(feed.uuid), items, str(feed.uuid))


# Broadcasts of the current transaction, per thread (Django connections are per thread).
_pending = threading.local()


def _after_commit(group: str, items: list[tuple[int, str]], feed_uuid: str) -> None:
    connection = transaction.get_connection()
    queued = getattr(_pending, "messages", None)
    hook_registered = any(hook is _flush for _, hook, _ in connection.run_on_commit)
    if connection.in_atomic_block and queued is not None and hook_registered:
        queued.append((group, items, feed_uuid))
        return
    # First broadcast of this transaction (a rolled-back one left no hook behind).
    _pending.messages = [(group, items, feed_uuid)]
    transaction.on_commit(_flush)


def _flush() -> None:
    messages, _pending.messages = getattr(_pending, "messages", None) or [], None

    hub.publish_many(
        [(group, items) for group, items, _ in messages],
        counters=[
            metrics.samples_counter(feed_uuid, len(items)) for _, items, feed_uuid in messages
        ],
    )
