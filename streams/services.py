"""Writes to feeds: samples, feeds and producers. Operator actions are audited (tenants.services)."""

from __future__ import annotations

import json
import logging
import math
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import DataError, IntegrityError, connection, transaction
from django.db.models import F, Min

from streams import events
from streams.models import Feed, FeedKind, Producer, PublishedId, Sample
from streams.stats import (
    NUMERIC_VALUE_LIMIT,
    NUMERIC_VALUE_LIMIT_TEXT,
    Accumulator,
    accumulator_for,
)
from streamsite import frames
from streamsite.control import access_changed
from tenants import quotas
from tenants.models import Tenant
from tenants.services import Actor, audit_record, shared_object_settings_update

# Pruning old samples every so many keeps the per-sample cost flat.
_PRUNE_EVERY = 500
MAX_VALUES_PER_FRAME = 1000
# ts is Unix seconds (or a producer's own clock counting from 0). 1e11 s is the
# year 5138: a timestamp in milliseconds (1.7e12) is refused, not stored as a
# date fifty thousand years ahead.
MAX_TS = 1e11
# Exactly-once publishing: a producer's id of a sample is remembered while the
# sample is retained and for at least this long after it was stored.
PUBLISH_ID_WINDOW = 24 * 3600
MAX_PUBLISH_ID_CHARS = 64
# A feed over its tenant's max_stored_bytes prunes its expired ids at most this often.
_ID_PRUNE_RETRY = 60.0

Values = Sequence[tuple[float, float | None]]

log = logging.getLogger(__name__)


class SampleRejected(ValueError):
    """A sample the feed cannot take; nothing was written. ``code`` is the wire error
    code; ``limit`` names the quota of a ``quota_exceeded``."""

    def __init__(self, code: str, message: str, *, limit: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.limit = limit

    @property
    def status(self) -> int:
        """The HTTP status of the refusal: the quota's, else 400."""
        return quotas.QUOTAS[self.limit].status if self.limit else 400

    def frame(self) -> frames.ErrorFrame:
        return frames.error(self.code, self.message, limit=self.limit or None)


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


def _timestamp(raw: Any) -> float:
    ts = _number(raw, '"ts"')
    if not 0.0 <= ts <= MAX_TS:
        raise SampleRejected(
            "bad_value",
            f'"ts" must be Unix seconds from 0 to {MAX_TS:.0e}'.replace("e+", "e")
            + " (milliseconds are 1000 times too large)",
        )
    return ts


def sample_inputs_from_frame(kind: str, frame: Any) -> list[tuple[float, float | None]]:
    """The samples of one publish frame (publish_frame_parse, without the ids)."""
    if isinstance(frame, int | float) and not isinstance(frame, bool):
        frame = {"value": frame}  # the write-ups' producers send str(0 or 1)
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
        pairs: list[tuple[Any, float | None]] = [(raw, None) for raw in raw_values]
    elif "value" in frame:
        ts = frame.get("ts")
        pairs = [(frame["value"], None if ts is None else _timestamp(ts))]
    else:
        raise SampleRejected("bad_frame", 'a frame needs "value" or "values"')
    inputs: list[tuple[float, float | None]] = []
    for raw, ts in pairs:
        value = _number(raw, "value")
        if kind == FeedKind.BINARY and value not in (0.0, 1.0):
            raise SampleRejected("bad_value", "this feed is binary: values must be 0 or 1")
        if not -NUMERIC_VALUE_LIMIT <= value <= NUMERIC_VALUE_LIMIT:
            raise SampleRejected(
                "bad_value",
                f"value must be between -{NUMERIC_VALUE_LIMIT_TEXT} and {NUMERIC_VALUE_LIMIT_TEXT}"
                " (beyond that a feed's variance could overflow)",
            )
        inputs.append((value, ts))
    return inputs


@dataclass(frozen=True)
class PublishFrame:
    """One validated publish frame: its samples, and the producer's ids of them (or None)."""

    inputs: list[tuple[float, float | None]]
    ids: list[str] | None = None
    is_values: bool = False  # a ``values`` frame (its ack lists the seqs of duplicates)


def publish_frame_parse(kind: str, frame: Any) -> PublishFrame:
    """Validate one publish frame ({"value"}, {"value", "ts"}, {"values"}, or a bare number,
    which stands for {"value": n}) for a feed kind, with its ``id`` (``ids`` for
    ``values``); raises SampleRejected."""
    inputs = sample_inputs_from_frame(kind, frame)
    if not isinstance(frame, dict):
        return PublishFrame(inputs)
    if "values" in frame:
        if frame.get("id") is not None:
            raise SampleRejected(
                "bad_frame", '"values" frames take "ids" (one per value), not "id"'
            )
        ids = frame.get("ids")
        if ids is None:
            return PublishFrame(inputs, is_values=True)
        if not isinstance(ids, list) or len(ids) != len(inputs):
            raise SampleRejected("bad_frame", '"ids" must be a list as long as "values"')
        for raw in ids:
            _publish_id(raw)
        if len(set(ids)) != len(ids):
            raise SampleRejected("bad_frame", '"ids" must be unique within the frame')
        return PublishFrame(inputs, ids, is_values=True)
    if frame.get("ids") is not None:
        raise SampleRejected("bad_frame", '"ids" goes with "values"; one sample takes "id"')
    raw = frame.get("id")
    return PublishFrame(inputs, None if raw is None else [_publish_id(raw)])


def _publish_id(raw: Any) -> str:
    if (
        not isinstance(raw, str)
        or not 0 < len(raw) <= MAX_PUBLISH_ID_CHARS
        # Control characters (NUL above all) and lone surrogates are not text a
        # database column can take: refused here, not by the batch's INSERT.
        or any(c < " " or c == "\x7f" for c in raw)
        or _not_utf8(raw)
    ):
        raise SampleRejected(
            "bad_frame",
            f"an id must be a string of 1 to {MAX_PUBLISH_ID_CHARS} characters, "
            "without control characters",
        )
    return raw


def _not_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class StoredSamples(list[Sample]):
    """One write's outcome: the samples it stored (a list, in order), and for each
    value of the frame its seq (``seqs``), whether it was stored now or is a
    ``duplicate`` of a sample stored before with the same id."""

    def __init__(self, samples: list[Sample], seqs: list[int], duplicates: list[int]) -> None:
        super().__init__(samples)
        self.seqs = seqs
        self.duplicates = duplicates  # indexes into the frame's values

    def ack(self, *, values_frame: bool) -> frames.AckFrame:
        """The ack (docs/PROTOCOL.md, "Publish socket"): ``seq`` is the highest of the
        frame's samples; a frame with duplicates says which."""
        if not self.duplicates:
            return frames.ack(max(self.seqs))
        return frames.ack(
            max(self.seqs),
            duplicate=len(self.duplicates) == len(self.seqs),
            seqs=self.seqs if values_frame else None,
            duplicates=self.duplicates if values_frame else None,
        )


def samples_append(
    *,
    feed: Feed,
    values: Values,
    ids: Sequence[str] | None = None,
) -> StoredSamples:
    """Persist samples with the next sequence numbers and update the feed's statistics.

    The feed row is locked for the transaction, so concurrent producers get
    consecutive, gap-free numbers. Viewers are notified after commit. Values
    should have been validated (publish_frame_parse); samples the feed's
    statistics cannot take raise SampleRejected, and nothing is written. With
    ``ids`` (one per value, unique), values whose id the feed remembers are not
    stored again (see samples_append_many).
    """
    (outcome,) = samples_append_many(writes=[(feed, values, ids)])
    if isinstance(outcome, SampleRejected):
        raise outcome
    return outcome


Write = tuple[Feed, Values] | tuple[Feed, Values, Sequence[str] | None]


def samples_append_many(*, writes: Sequence[Write]) -> list[StoredSamples | SampleRejected]:
    """Several appends, possibly to several feeds, in one transaction (group commit).

    A write is ``(feed, values)`` or ``(feed, values, ids)``: one publish frame.
    Each write stands alone: it is numbered and computed on a copy of its feed's
    statistics, and kept only if every sample of it adds, computes and encodes.
    A write that does not gets a SampleRejected (``bad_value``) in its place,
    consumes no sequence number, and every other write, of any feed or tenant,
    commits.

    Exactly-once: a value whose id the feed already stored (in an earlier
    transaction, or in an earlier write of this batch) is not stored again; its
    original seq is reported and it is listed in ``duplicates``. The other
    values of the write are stored, in order, with new seqs. New ids count
    toward the tenant's max_stored_bytes (quotas.BYTES_PER_ID): a write whose
    new ids would go over it is refused (``quota_exceeded``) alone.

    Three statements whatever the number of feeds: lock every feed row
    (``SELECT ... ORDER BY id FOR UPDATE``: one order for everyone, so two
    processes committing overlapping batches cannot deadlock), insert every
    sample (``executemany``), update every feed; when frames carry ids, also
    one lookup per feed that has some, one read of the tenants' bytes left and
    one insert of the new ids. This is ingest's hot path, hence
    plain SQL rather than a model save per row. If the database refuses a row
    (IntegrityError, DataError), the batch is written again with each write
    under a savepoint of its own, so that only the write at fault is refused;
    any other database error (a lost connection, a locked or full database)
    propagates and no write of the batch is stored.

    Returns, for each write in order, its StoredSamples (unsaved instances: no
    primary key) or its SampleRejected.
    """
    now = time.time()
    wanted: dict[int, list[int]] = {}
    for index, (feed, values, *_) in enumerate(writes):
        if values:
            wanted.setdefault(feed.pk, []).append(index)
    if not wanted:
        return [StoredSamples([], [], []) for _ in writes]
    try:
        with transaction.atomic():
            return _append_locked(writes, wanted, now, one_by_one=False)
    except (IntegrityError, DataError) as exc:
        log.warning(
            "ingest: the database refused a row (%s); writing the batch frame by frame", exc
        )
    with transaction.atomic():
        return _append_locked(writes, wanted, now, one_by_one=True)


SampleRow = tuple[int, int, float, float, str]
# What ingest reads of each feed it locks.
_LOCKED_FIELDS = (
    "pk", "uuid", "tenant_id", "kind", "last_seq", "stats",
    "retention_count", "retention_seconds", "remembered_ids",
)  # fmt: skip
IdRow = tuple[int, str, int, float]


def _locked_feeds(pks: list[int]) -> list[Feed]:
    """``SELECT ... WHERE id IN (...) ORDER BY id FOR UPDATE`` of _LOCKED_FIELDS, as Feeds.

    Plain SQL: building and compiling this query through the ORM cost more than
    the rest of a small group commit (38 % of the ingest thread's Python time in
    the ``feeds`` bench). SQLite has no FOR UPDATE: its transaction (BEGIN
    IMMEDIATE) already holds the write lock.
    """
    meta = Feed._meta
    wanted = {meta.pk if name == "pk" else meta.get_field(name) for name in _LOCKED_FIELDS}
    fields = [field for field in meta.concrete_fields if field in wanted]  # from_db's order
    quote = connection.ops.quote_name
    columns = ", ".join(quote(str(field.column)) for field in fields)
    pk = quote(str(meta.pk.column))
    sql = (
        f"SELECT {columns} FROM {quote(meta.db_table)} "
        f"WHERE {pk} IN ({', '.join(['%s'] * len(pks))}) ORDER BY {pk}"
    )
    if connection.features.has_select_for_update:
        sql += " FOR UPDATE"
    with connection.cursor() as cursor:
        cursor.execute(sql, pks)
        rows = cursor.fetchall()
    attnames = [field.attname for field in fields]
    uuid_at, stats_at = attnames.index("uuid"), attnames.index("stats")
    feeds = []
    for row in rows:
        values = list(row)
        # What the ORM's converters would do: SQLite keeps a UUID as 32 hex digits,
        # and both backends hand JSON over as text (Django's psycopg loads jsonb as text).
        if not isinstance(values[uuid_at], uuid.UUID):
            values[uuid_at] = uuid.UUID(values[uuid_at])
        if isinstance(values[stats_at], str):
            values[stats_at] = json.loads(values[stats_at])
        feeds.append(Feed.from_db(connection.alias, attnames, values))
    return feeds


def _append_locked(
    writes: Sequence[Write],
    wanted: dict[int, list[int]],
    now: float,
    *,
    one_by_one: bool,
) -> list[StoredSamples | SampleRejected]:
    results: list[StoredSamples | SampleRejected] = [StoredSamples([], [], []) for _ in writes]
    locked = _locked_feeds(sorted(wanted))
    ids = _PublishedIds(writes, wanted, locked, now)
    rows: list[SampleRow] = []
    id_rows: list[IdRow] = []
    updates: list[tuple[int, str, int, int]] = []
    published: list[tuple[Feed, list[Sample]]] = []
    prune: list[Feed] = []
    for feed in locked:
        try:
            accumulator = _usable_accumulator(feed)
        except SampleRejected as exc:
            for index in wanted[feed.pk]:
                results[index] = exc
            continue
        previous_seq = seq = feed.last_seq
        new_ids = 0
        committed: list[Sample] = []
        for index in wanted[feed.pk]:
            _, values, *rest = writes[index]
            frame_ids = rest[0] if rest else None
            trial = accumulator.copy()
            try:
                fresh, seqs, duplicates = ids.split(feed, values, frame_ids)
                samples, write_rows = _numbered(feed, trial, seq, [values[i] for i in fresh], now)
                write_id_rows = ids.rows(feed, frame_ids, fresh, samples)
                if one_by_one and write_rows:
                    _insert_alone(feed, write_rows, write_id_rows)
            except SampleRejected as exc:
                results[index] = exc
                continue
            ids.stored(feed, write_id_rows)
            for i, sample in zip(fresh, samples, strict=True):
                seqs[i] = sample.seq
            accumulator, seq = trial, seq + len(samples)
            new_ids += len(write_id_rows)
            results[index] = StoredSamples(samples, seqs, duplicates)
            committed.extend(samples)
            if not one_by_one:
                rows.extend(write_rows)
                id_rows.extend(write_id_rows)
        if not committed:
            continue
        feed.last_seq = seq
        feed.remembered_ids += new_ids
        updates.append((seq, json.dumps(accumulator.state()), new_ids, feed.pk))
        published.append((feed, committed))
        if seq // _PRUNE_EVERY != previous_seq // _PRUNE_EVERY:
            prune.append(feed)
    with connection.cursor() as cursor:
        if rows:
            cursor.executemany(_INSERT_SAMPLE, rows)
        if id_rows:
            cursor.executemany(_INSERT_ID, id_rows)
        if updates:
            cursor.executemany(_UPDATE_FEED, updates)
    # Announced only once every statement succeeded: a batch written again frame
    # by frame must not broadcast what its first attempt computed.
    for feed, samples in published:
        events.samples_published(feed, samples)
    for feed in prune:
        _prune(feed, now)
    return results


class _PublishedIds:
    """The ids of one ingest batch: which values are duplicates, and the
    max_stored_bytes budget their new ids spend. Ids are looked up once, under
    the feeds' row locks, so no other writer can store one in between."""

    def __init__(
        self, writes: Sequence[Write], wanted: dict[int, list[int]], locked: list[Feed], now: float
    ) -> None:
        self.now = now
        asked: dict[int, list[str]] = {}
        for feed_pk, indexes in wanted.items():
            for index in indexes:
                write = writes[index]
                if len(write) > 2 and write[2]:
                    asked.setdefault(feed_pk, []).extend(write[2])
        # feed pk -> {id: seq}; also takes the ids this batch stores, so the second
        # copy of an id in one batch is a duplicate of the first.
        self.known: dict[int, dict[str, int]] = {pk: {} for pk in asked}
        self.bytes_left: dict[int, int] = {}
        if not asked:
            return
        # Plain SQL on the (feed, publish_id) unique index, in chunks that stay under
        # any database's limit of parameters per statement.
        with connection.cursor() as cursor:
            for feed_pk, feed_ids in asked.items():
                for start in range(0, len(feed_ids), _IDS_PER_LOOKUP):
                    chunk = feed_ids[start : start + _IDS_PER_LOOKUP]
                    cursor.execute(
                        _SELECT_IDS + ", ".join(["%s"] * len(chunk)) + ")", [feed_pk, *chunk]
                    )
                    self.known[feed_pk].update(cursor.fetchall())
        tenants = {feed.tenant_id for feed in locked if feed.pk in asked}
        self.bytes_left = quotas.stored_bytes_left(tenants)

    def split(
        self, feed: Feed, values: Values, frame_ids: Sequence[str] | None
    ) -> tuple[list[int], list[int], list[int]]:
        """(indexes of the values to store, seqs with duplicates' filled in, duplicates' indexes).
        Raises SampleRejected (quota_exceeded) if the new ids are over the tenant's budget."""
        if not frame_ids:
            return list(range(len(values))), [0] * len(values), []
        known = self.known[feed.pk]
        seqs = [known.get(publish_id, 0) for publish_id in frame_ids]
        fresh = [i for i, seq in enumerate(seqs) if not seq]
        cost = len(fresh) * quotas.BYTES_PER_ID
        if cost and cost > self.bytes_left[feed.tenant_id]:
            self.bytes_left[feed.tenant_id] += _prune_ids(feed, self.now) * quotas.BYTES_PER_ID
            if cost > self.bytes_left[feed.tenant_id]:
                refusal = quotas.ids_refusal(feed.tenant_id, ids=len(fresh))
                raise SampleRejected("quota_exceeded", refusal.message, limit=refusal.limit)
        return fresh, seqs, [i for i, seq in enumerate(seqs) if seq]

    def rows(
        self,
        feed: Feed,
        frame_ids: Sequence[str] | None,
        fresh: list[int],
        samples: list[Sample],
    ) -> list[IdRow]:
        if not frame_ids:
            return []
        return [
            (feed.pk, frame_ids[i], sample.seq, self.now)
            for i, sample in zip(fresh, samples, strict=True)
        ]

    def stored(self, feed: Feed, id_rows: list[IdRow]) -> None:
        if id_rows:
            self.known[feed.pk].update((publish_id, seq) for _, publish_id, seq, _ in id_rows)
            self.bytes_left[feed.tenant_id] -= len(id_rows) * quotas.BYTES_PER_ID


def _numbered(
    feed: Feed,
    accumulator: Accumulator,
    seq: int,
    values: Values,
    now: float,
) -> tuple[list[Sample], list[SampleRow]]:
    """One write's samples, numbered after ``seq``, each with the statistics after it.

    Raises SampleRejected if a value cannot be added or its statistics cannot be
    encoded (not finite); ``accumulator`` is then half-updated: the caller drops it.
    """
    samples, rows = [], []
    try:
        for value, ts in values:
            accumulator.add(value)
            seq += 1
            stats_json = accumulator.summary_json()
            sample = Sample(
                feed_id=feed.pk, seq=seq, value=value,
                ts=now if ts is None else ts, stats_json=stats_json,
            )  # fmt: skip
            samples.append(sample)
            rows.append((feed.pk, seq, sample.value, sample.ts, stats_json))
    except (ValueError, ArithmeticError) as exc:
        raise SampleRejected(
            "bad_value", f"the feed's statistics cannot take this frame ({exc}); nothing was stored"
        ) from exc
    return samples, rows


def _usable_accumulator(feed: Feed) -> Accumulator:
    """The feed's statistics, or SampleRejected if its stored state cannot take a sample."""
    try:
        accumulator = accumulator_for(feed.kind, feed.stats)
        problem = accumulator.problem()
    except (ValueError, TypeError) as exc:
        problem = f"unreadable: {exc}"
    if problem is None:
        return accumulator
    if feed.uuid not in _reported_unusable:
        _reported_unusable.add(feed.uuid)
        log.warning(
            "feed %s: stored statistics unusable (%s); its samples are refused until "
            "`manage.py recomputestats %s`",
            feed.uuid,
            problem,
            feed.uuid,
        )
    raise SampleRejected(
        "bad_value",
        f"this feed's stored statistics are unusable ({problem}), so nothing was stored; "
        "an operator can rebuild them from the stored samples (manage.py recomputestats)",
    )


# Feeds whose unusable statistics this process has logged: once each, not once per frame.
_reported_unusable: set[uuid.UUID] = set()


def _insert_alone(feed: Feed, rows: list[SampleRow], id_rows: list[IdRow]) -> None:
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(_INSERT_SAMPLE, rows)
            if id_rows:
                cursor.executemany(_INSERT_ID, id_rows)
    except (IntegrityError, DataError) as exc:
        log.warning("feed %s: the database refused a frame's samples (%s)", feed.uuid, exc)
        raise SampleRejected(
            "bad_value", "the database refused this frame's samples; nothing of it was stored"
        ) from exc


_INSERT_SAMPLE = (
    f"INSERT INTO {Sample._meta.db_table} (feed_id, seq, value, ts, stats_json) "
    "VALUES (%s, %s, %s, %s, %s)"
)
_SELECT_IDS = (
    f"SELECT publish_id, seq FROM {PublishedId._meta.db_table} "
    "WHERE feed_id = %s AND publish_id IN ("
)
_IDS_PER_LOOKUP = 900
_INSERT_ID = (
    f"INSERT INTO {PublishedId._meta.db_table} (feed_id, publish_id, seq, received) "
    "VALUES (%s, %s, %s, %s)"
)
_UPDATE_FEED = (
    f"UPDATE {Feed._meta.db_table} SET last_seq = %s, stats = %s, "
    "remembered_ids = remembered_ids + %s WHERE id = %s"
)


def _prune(feed: Feed, now: float) -> None:
    """Retention: the samples beyond the feed's count or age, then the ids that are
    neither of a retained sample nor younger than PUBLISH_ID_WINDOW."""
    Sample.objects.filter(feed_id=feed.pk, seq__lte=feed.last_seq - feed.retention_count).delete()
    if feed.retention_seconds:
        Sample.objects.filter(feed_id=feed.pk, ts__lt=now - feed.retention_seconds).delete()
    if feed.remembered_ids:
        _prune_ids(feed, now)


def _prune_ids(feed: Feed, now: float) -> int:
    """Forget the feed's expired ids (under its row lock); returns how many.

    At most once per _ID_PRUNE_RETRY per feed and process: a tenant at its quota
    sending id after id does not run a DELETE per batch.
    """
    if now - _ids_pruned_at.get(feed.pk, -math.inf) < _ID_PRUNE_RETRY:
        return 0
    _ids_pruned_at[feed.pk] = now
    oldest = Sample.objects.filter(feed_id=feed.pk).aggregate(oldest=Min("seq"))["oldest"]
    # Every id of a sample still retained is kept (seq >= the oldest retained; a
    # sample pruned by age between two retained ones keeps its id too: more, not less).
    expired = PublishedId.objects.filter(
        feed_id=feed.pk,
        received__lt=now - PUBLISH_ID_WINDOW,
        seq__lt=feed.last_seq + 1 if oldest is None else oldest,
    )
    forgotten, _ = expired.delete()
    if forgotten:
        feed.remembered_ids -= forgotten
        Feed.objects.filter(pk=feed.pk).update(remembered_ids=F("remembered_ids") - forgotten)
    return forgotten


# When each feed's ids were last pruned by this process (time.time()).
_ids_pruned_at: dict[int, float] = {}


@dataclass
class StatsRecomputed:
    """What ``feed_stats_recompute`` did: ``stats`` is the feed's new state."""

    samples: int  # retained samples read, in seq order
    excluded: int  # samples left out: values a feed no longer accepts
    first_excluded: list[int]  # the seqs of the first few of them
    stats: dict[str, Any]
    previous_problem: str | None  # why the old state was unusable, if it was


RECOMPUTE_CHUNK = 2000


def feed_stats_recompute(
    *, feed: Feed, chunk_size: int = RECOMPUTE_CHUNK, actor: Actor = None
) -> StatsRecomputed:
    """Rebuild a feed's statistics from its retained samples, in seq order: the
    feed's state and every sample's ``stats_json``.

    ``chunk_size`` samples per transaction, each under the feed's row lock:
    memory stays bounded, and publishers to this feed (and the ingest batches
    they share with other feeds) wait for one chunk at most, never for the
    whole feed. The chunk that finds no sample after it, under the lock, also
    writes the feed's state, so samples published meanwhile are counted too
    (their ``stats_json`` is rewritten with the others) and numbering is
    untouched. Pruned samples are gone, so the result covers the retained ones
    only. A stored value the feed would refuse today (outside
    ±NUMERIC_VALUE_LIMIT, or not 0/1 on a binary feed) stays stored but is left
    out of the statistics: its ``stats_json`` repeats the statistics before it.
    """
    accumulator = accumulator_for(feed.kind, None)
    after, read, excluded = 0, 0, 0
    first_excluded: list[int] = []
    while True:
        with transaction.atomic():
            locked = Feed.objects.select_for_update().only("pk", "kind", "stats").get(pk=feed.pk)
            chunk = list(
                Sample.objects.filter(feed_id=feed.pk, seq__gt=after)
                .order_by("seq")
                .values_list("pk", "seq", "value")[:chunk_size]
            )
            rewritten = []
            for pk, seq, value in chunk:
                trial = accumulator.copy()
                try:
                    trial.add(value)
                    stats_json = trial.summary_json()
                    accumulator = trial
                except (ValueError, ArithmeticError):
                    excluded += 1
                    if len(first_excluded) < 10:
                        first_excluded.append(seq)
                    stats_json = accumulator.summary_json()
                rewritten.append((stats_json, pk))
            if rewritten:
                with connection.cursor() as cursor:
                    cursor.executemany(_UPDATE_SAMPLE_STATS, rewritten)
            read += len(chunk)
            if len(chunk) == chunk_size:
                after = chunk[-1][1]
                continue
            try:
                previous_problem = accumulator_for(locked.kind, locked.stats).problem()
            except (ValueError, TypeError) as exc:
                previous_problem = f"unreadable: {exc}"
            state = accumulator.state()
            Feed.objects.filter(pk=feed.pk).update(stats=state)
            audit_record(
                actor=actor,
                tenant=feed.tenant,
                action="feed.stats_recomputed",
                target=feed,
                details={"samples": read, "excluded": excluded, "was": previous_problem},
            )
        return StatsRecomputed(read, excluded, first_excluded, state, previous_problem)


_UPDATE_SAMPLE_STATS = f"UPDATE {Sample._meta.db_table} SET stats_json = %s WHERE id = %s"


def feed_create(
    *,
    tenant: Tenant,
    name: str,
    kind: str = FeedKind.BINARY,
    share: bool = False,
    actor: Actor = None,
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
def feed_settings_update(*, feed: Feed, actor: Actor = None, **changes: Any) -> list[str]:
    """Change some of FEED_SETTINGS; returns the names that changed (see
    tenants.services.shared_object_settings_update)."""
    return shared_object_settings_update(
        obj=feed, allowed=FEED_SETTINGS, action="feed.changed", actor=actor, changes=changes
    )


@transaction.atomic
def feed_share_key_rotate(*, feed: Feed, actor: Actor = None) -> str:
    """A new share key; viewers using the old one are disconnected."""
    feed.share_key = secrets.token_urlsafe(24)
    feed.save(update_fields=["share_key"])
    audit_record(actor=actor, tenant=feed.tenant, action="feed.share_key_rotated", target=feed)
    access_changed(tenant_uuid=feed.tenant.uuid, object_uuid=feed.uuid)
    return feed.share_key


@transaction.atomic
def feed_share_key_revoke(*, feed: Feed, actor: Actor = None) -> None:
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
    actor: Actor = None,
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
    actor: Actor = None,
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
def producer_token_rotate(*, producer: Producer, actor: Actor = None) -> str:
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
def producer_token_revoke(*, producer: Producer, actor: Actor = None) -> None:
    producer.token_hash = None
    producer.token_prefix = ""
    producer.save(update_fields=["token_hash", "token_prefix"])
    audit_record(
        actor=actor, tenant=producer.tenant, action="producer.token_revoked", target=producer
    )
    access_changed(tenant_uuid=producer.tenant.uuid, producer_uuid=producer.uuid)


@transaction.atomic
def producer_set_enabled(*, producer: Producer, enabled: bool, actor: Actor = None) -> None:
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
