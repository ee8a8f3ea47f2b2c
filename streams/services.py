"""Writes to feeds: samples, feeds and producers. Operator actions are audited (tenants.services)."""

from __future__ import annotations

import json
import math
import secrets
import time
from collections.abc import Sequence
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import connection, transaction

from streams import events
from streams.models import Feed, FeedKind, Producer, Sample
from streams.stats import accumulator_for
from streamsite.control import access_changed
from streamsite.frames import encode
from tenants import quotas
from tenants.models import Tenant
from tenants.services import audit_record

# Pruning old samples every so many keeps the per-sample cost flat.
_PRUNE_EVERY = 500
MAX_VALUES_PER_FRAME = 1000


class SampleRejected(ValueError):
    """A sample the feed cannot take; nothing was written. ``code`` is the wire error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _number(raw: Any, what: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise SampleRejected("bad_value", f"{what} must be a number, got {type(raw).__name__}")
    try:
        value = float(raw)  # JSON integers have no size limit: 1e400 written out overflows
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        raise SampleRejected("bad_value", f"{what} must be finite")
    return value


def sample_inputs_from_frame(kind: str, frame: Any) -> list[tuple[float, float | None]]:
    """Validate one publish frame ({"value"}, {"value", "ts"} or {"values"}) for a feed kind."""
    if not isinstance(frame, dict):
        raise SampleRejected("bad_frame", "a frame must be a JSON object")
    if "values" in frame:
        raw_values = frame["values"]
        if not isinstance(raw_values, list) or not raw_values:
            raise SampleRejected("bad_frame", '"values" must be a non-empty list')
        if len(raw_values) > MAX_VALUES_PER_FRAME:
            raise SampleRejected(
                "bad_frame", f'"values" takes at most {MAX_VALUES_PER_FRAME} samples'
            )
        pairs = [(raw, None) for raw in raw_values]
    elif "value" in frame:
        ts = frame.get("ts")
        pairs = [(frame["value"], None if ts is None else _number(ts, '"ts"'))]
    else:
        raise SampleRejected("bad_frame", 'a frame needs "value" or "values"')
    inputs = []
    for raw, ts in pairs:
        value = _number(raw, "value")
        if kind == FeedKind.BINARY and value not in (0.0, 1.0):
            raise SampleRejected("bad_value", "this feed is binary: values must be 0 or 1")
        inputs.append((value, ts))
    return inputs


def samples_append(*, feed: Feed, values: Sequence[tuple[float, float | None]]) -> list[Sample]:
    """Persist samples with the next sequence numbers and update the feed's statistics.

    The feed row is locked for the transaction, so concurrent producers get
    consecutive, gap-free numbers. Viewers are notified after commit. Values
    must have been validated (sample_inputs_from_frame); a bad one raises and
    rolls everything back.
    """
    return samples_append_many(writes=[(feed, values)])[0]


def samples_append_many(
    *, writes: Sequence[tuple[Feed, Sequence[tuple[float, float | None]]]]
) -> list[list[Sample]]:
    """Several appends, possibly to several feeds, in one transaction (group commit).

    Three statements whatever the number of feeds: lock every feed row
    (``SELECT ... ORDER BY id FOR UPDATE``: one order for everyone, so two
    processes committing overlapping batches cannot deadlock), insert every
    sample (``executemany``), update every feed. This is ingest's hot path,
    hence plain SQL rather than a model save per row. Returns the samples of
    each write, in order (unsaved instances: no primary key).
    """
    now = time.time()
    wanted: dict[int, list[int]] = {}
    for index, (feed, values) in enumerate(writes):
        if values:
            wanted.setdefault(feed.pk, []).append(index)
    results: list[list[Sample]] = [[] for _ in writes]
    if not wanted:
        return results
    with transaction.atomic():
        locked = (
            Feed.objects.select_for_update()
            .filter(pk__in=wanted)
            .order_by("pk")
            .only("pk", "uuid", "kind", "last_seq", "stats", "retention_count", "retention_seconds")
        )
        rows: list[tuple[int, int, float, float, str]] = []
        updates: list[tuple[int, str, int]] = []
        prune: list[Feed] = []
        for feed in locked:
            accumulator = accumulator_for(feed.kind, feed.stats)
            previous_seq = seq = feed.last_seq
            for index in wanted[feed.pk]:
                samples = []
                for value, ts in writes[index][1]:
                    accumulator.add(value)
                    seq += 1
                    stats_json = encode(accumulator.summary())
                    sample = Sample(
                        feed_id=feed.pk, seq=seq, value=value,
                        ts=now if ts is None else ts, stats_json=stats_json,
                    )  # fmt: skip
                    samples.append(sample)
                    rows.append((feed.pk, seq, sample.value, sample.ts, stats_json))
                results[index] = samples
            feed.last_seq = seq
            updates.append((seq, json.dumps(accumulator.state()), feed.pk))
            events.samples_published(feed, [s for i in wanted[feed.pk] for s in results[i]])
            if seq // _PRUNE_EVERY != previous_seq // _PRUNE_EVERY:
                prune.append(feed)
        with connection.cursor() as cursor:
            cursor.executemany(_INSERT_SAMPLE, rows)
            cursor.executemany(_UPDATE_FEED, updates)
        for feed in prune:
            _prune(feed, now)
    return results


_INSERT_SAMPLE = (
    f"INSERT INTO {Sample._meta.db_table} (feed_id, seq, value, ts, stats_json) "
    "VALUES (%s, %s, %s, %s, %s)"
)
_UPDATE_FEED = f"UPDATE {Feed._meta.db_table} SET last_seq = %s, stats = %s WHERE id = %s"


def _prune(feed: Feed, now: float) -> None:
    Sample.objects.filter(feed_id=feed.pk, seq__lte=feed.last_seq - feed.retention_count).delete()
    if feed.retention_seconds:
        Sample.objects.filter(feed_id=feed.pk, ts__lt=now - feed.retention_seconds).delete()


def feed_create(
    *,
    tenant: Tenant,
    name: str,
    kind: str = FeedKind.BINARY,
    share: bool = False,
    actor: AbstractBaseUser | None = None,
) -> Feed:
    """Raises tenants.quotas.QuotaExceeded (nothing created) when the tenant has max_feeds."""
    with transaction.atomic():
        quotas.check_feed_create(tenant)
        feed = Feed.objects.create(
            tenant=tenant,
            name=name,
            kind=kind,
            share_key=secrets.token_urlsafe(24) if share else None,
        )
        audit_record(
            actor=actor,
            tenant=tenant,
            action="feed.created",
            target=feed,
            details={"kind": kind, "shared": share},
        )
    return feed


# The feed settings an operator may change after creation (kind and tenant are fixed).
FEED_SETTINGS = ("name", "allowed_origins", "retention_count", "retention_seconds")


@transaction.atomic
def feed_settings_update(
    *, feed: Feed, actor: AbstractBaseUser | None = None, **changes: Any
) -> list[str]:
    """Change some of FEED_SETTINGS; returns the names that changed.

    Dropping an allowed origin disconnects the share-key viewers on that origin.
    """
    unknown = set(changes) - set(FEED_SETTINGS)
    if unknown:
        raise TypeError(f"not a feed setting: {sorted(unknown)}")
    changed = [name for name, value in changes.items() if getattr(feed, name) != value]
    if not changed:
        return []
    for name in changed:
        setattr(feed, name, changes[name])
    feed.save(update_fields=changed)
    audit_record(
        actor=actor,
        tenant=feed.tenant,
        action="feed.changed",
        target=feed,
        details={"fields": changed},
    )
    if "allowed_origins" in changed:
        access_changed(tenant_uuid=feed.tenant.uuid, object_uuid=feed.uuid)
    return changed


@transaction.atomic
def feed_share_key_rotate(*, feed: Feed, actor: AbstractBaseUser | None = None) -> str:
    """A new share key; viewers using the old one are disconnected."""
    feed.share_key = secrets.token_urlsafe(24)
    feed.save(update_fields=["share_key"])
    audit_record(actor=actor, tenant=feed.tenant, action="feed.share_key_rotated", target=feed)
    access_changed(tenant_uuid=feed.tenant.uuid, object_uuid=feed.uuid)
    return feed.share_key


@transaction.atomic
def feed_share_key_revoke(*, feed: Feed, actor: AbstractBaseUser | None = None) -> None:
    feed.share_key = None
    feed.save(update_fields=["share_key"])
    audit_record(actor=actor, tenant=feed.tenant, action="feed.share_key_revoked", target=feed)
    access_changed(tenant_uuid=feed.tenant.uuid, object_uuid=feed.uuid)


@transaction.atomic
def producer_create(
    *,
    feed: Feed,
    kind: str,
    name: str = "",
    config: dict[str, Any] | None = None,
    enabled: bool = True,
    actor: AbstractBaseUser | None = None,
) -> tuple[Producer, str]:
    """Create a producer; returns it and its token, which is never stored or shown again."""
    producer = Producer(
        tenant=feed.tenant,
        feed=feed,
        kind=kind,
        name=name or f"{kind} for {feed.name}",
        enabled=enabled,
    )
    producer.config = config or {}
    token = _set_token(producer)
    producer.save()
    audit_record(
        actor=actor,
        tenant=feed.tenant,
        action="producer.created",
        target=producer,
        details={"kind": kind, "feed": str(feed.uuid), "token_prefix": producer.token_prefix},
    )
    return producer, token


@transaction.atomic
def producer_update(
    *,
    producer: Producer,
    name: str,
    config: dict[str, Any],
    actor: AbstractBaseUser | None = None,
) -> list[str]:
    """Rename or reconfigure; a running producer picks the config up when it next starts."""
    changed = [
        field
        for field, value in (("name", name), ("config", config))
        if getattr(producer, field) != value
    ]
    if not changed:
        return []
    producer.name, producer.config = name, config
    producer.save(update_fields=changed)
    audit_record(
        actor=actor,
        tenant=producer.tenant,
        action="producer.changed",
        target=producer,
        details={"fields": changed},
    )
    return changed


@transaction.atomic
def producer_token_rotate(*, producer: Producer, actor: AbstractBaseUser | None = None) -> str:
    """A new token (returned, shown once); connections using the old one are closed."""
    token = _set_token(producer)
    producer.save(update_fields=["token_hash", "token_prefix"])
    audit_record(
        actor=actor,
        tenant=producer.tenant,
        action="producer.token_rotated",
        target=producer,
        details={"token_prefix": producer.token_prefix},
    )
    access_changed(tenant_uuid=producer.tenant.uuid, producer_uuid=producer.uuid)
    return token


@transaction.atomic
def producer_token_revoke(*, producer: Producer, actor: AbstractBaseUser | None = None) -> None:
    producer.token_hash = None
    producer.token_prefix = ""
    producer.save(update_fields=["token_hash", "token_prefix"])
    audit_record(
        actor=actor, tenant=producer.tenant, action="producer.token_revoked", target=producer
    )
    access_changed(tenant_uuid=producer.tenant.uuid, producer_uuid=producer.uuid)


@transaction.atomic
def producer_set_enabled(
    *, producer: Producer, enabled: bool, actor: AbstractBaseUser | None = None
) -> None:
    """Disabled producers are refused and stopped by runproducers within seconds."""
    producer.enabled = enabled
    producer.save(update_fields=["enabled"])
    audit_record(
        actor=actor,
        tenant=producer.tenant,
        action="producer.enabled" if enabled else "producer.disabled",
        target=producer,
    )
    access_changed(tenant_uuid=producer.tenant.uuid, producer_uuid=producer.uuid)


def _set_token(producer: Producer) -> str:
    token = "sst_" + secrets.token_urlsafe(32)
    producer.token_hash = Producer.hash_token(token)
    producer.token_prefix = token[:8]
    return token
