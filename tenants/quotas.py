"""Per-tenant quotas: the limits, what a tenant uses of them, and the refusal.

Each quota has a default setting (``QUOTA_*``, from the environment) and an
optional per-tenant value on ``Tenant`` (``quota_<name>``, set by superusers in
the admin). The services that create (``feed_create``, ``document_create``) and
the entry points of uploads, exports and publishing check them; a refusal
raises ``QuotaExceeded`` before anything changes, and the caller turns it into
HTTP 429 or 413, an error frame, a form error or a CommandError, all naming
the limit.

- ``max_feeds``, ``max_documents``: counted in the database under the
  tenant's row lock, so two concurrent creations cannot both take the last one.
- ``max_stored_bytes``: the characters of the tenant's stored document rows
  (JSON, ``Document.stored_bytes``, kept by the upload that stores them) plus ``BYTES_PER_SAMPLE`` for each sample its feeds keep (estimated
  from ``last_seq`` and retention, not counted) and ``BYTES_PER_ID`` for each
  publish id its feeds remember (exactly-once publishing, ``Feed.remembered_ids``);
  an upload counts as its size in bytes, a publish frame as its new ids.
- ``concurrent_uploads``, ``concurrent_exports``: slots in Redis across every
  process (streamsite/slots.py), held while the upload or export runs.
- ``samples_per_second``: a token bucket in Redis per tenant, shared by all its
  feeds and all processes (one second's worth of burst), asked once per group
  commit for every publish socket of the event loop (``take_samples_many``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from django.db import connection
from django.db.models import BigIntegerField, Sum
from django.db.models.functions import Least

from streamsite import cluster, frames, hub, metrics, pubsub, slots
from tenants.models import Tenant

log = logging.getLogger(__name__)

# What one stored sample costs, for max_stored_bytes: its row (feed, seq, value,
# ts: 32 bytes), its statistics as JSON text (~60-110 characters) and its index
# entry, rounded up. Documented in docs/PROTOCOL.md ("Limits").
BYTES_PER_SAMPLE = 200
# What one remembered publish id costs: its row (feed, seq, time: 24 bytes, the id:
# up to 64 characters) and its two index entries, rounded up. Also in PROTOCOL.md.
BYTES_PER_ID = 200


@dataclass(frozen=True)
class Quota:
    name: str  # on the wire, in "limit"
    setting: str  # the default
    field: str  # the tenant's own, if set
    status: int  # HTTP status when exceeded
    unit: str


QUOTAS: dict[str, Quota] = {
    quota.name: quota
    for quota in (
        Quota("max_feeds", "QUOTA_MAX_FEEDS", "quota_max_feeds", 429, "feeds"),
        Quota("max_documents", "QUOTA_MAX_DOCUMENTS", "quota_max_documents", 429, "documents"),
        Quota("max_stored_bytes", "QUOTA_MAX_STORED_BYTES", "quota_max_stored_bytes", 413, "bytes"),
        Quota(
            "samples_per_second",
            "QUOTA_SAMPLES_PER_SECOND",
            "quota_samples_per_second",
            429,
            "samples a second",
        ),
        Quota(
            "concurrent_uploads",
            "QUOTA_CONCURRENT_UPLOADS",
            "quota_concurrent_uploads",
            429,
            "uploads at once",
        ),
        Quota(
            "concurrent_exports",
            "QUOTA_CONCURRENT_EXPORTS",
            "quota_concurrent_exports",
            429,
            "exports at once",
        ),
    )
}
QUOTA_FIELDS = [quota.field for quota in QUOTAS.values()]


class QuotaExceeded(Exception):
    """A tenant's quota refuses this; nothing was changed. ``limit`` is the quota's name."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit
        self.message = message

    @property
    def status(self) -> int:
        return QUOTAS[self.limit].status

    def frame(self) -> frames.ErrorFrame:
        """The error body / frame: ``{"type": "error", "error": "quota_exceeded", "limit", "message"}``."""
        return frames.error(frames.ErrorCode.QUOTA_EXCEEDED, self.message, limit=self.limit)


def limit_for(tenant: Tenant, name: str) -> int:
    """The tenant's effective limit: its own value, else the setting."""
    quota = QUOTAS[name]
    own = getattr(tenant, quota.field)
    return own if own is not None else getattr(settings, quota.setting)


def _exceeded(tenant: Tenant, name: str, limit: int, detail: str = "") -> QuotaExceeded:
    quota = QUOTAS[name]
    if name not in ("concurrent_uploads", "concurrent_exports"):  # slots noted them already
        slots.note_refusal(name, f"tenant {tenant.slug}", limit)
    message = f"tenant {tenant.slug} may have at most {limit:,} {quota.unit} ({name})"
    return QuotaExceeded(name, f"{message}{detail}; ask the operator to raise it")


# -- counts and stored bytes ---------------------------------------------------


def feed_count(tenant: Tenant) -> int:
    from streams.models import Feed

    return Feed.objects.filter(tenant_id=tenant.pk).count()


def document_count(tenant: Tenant) -> int:
    from documents.models import Document

    return Document.objects.filter(tenant_id=tenant.pk).count()


def stored_bytes(tenant: Tenant, *, excluding_document_id: int | None = None) -> int:
    """What the tenant stores (see the module docstring), optionally without one document."""
    from documents.models import Document

    documents = Document.objects.filter(tenant_id=tenant.pk)
    if excluding_document_id is not None:
        documents = documents.exclude(pk=excluding_document_id)
    rows = documents.aggregate(total=Sum("stored_bytes"))["total"] or 0
    return int(rows) + _feed_bytes([tenant.pk]).get(tenant.pk, 0)


def _feed_bytes(tenant_ids: Collection[int]) -> dict[int, int]:
    """What the feeds of each tenant store: kept samples and remembered ids."""
    from streams.models import Feed

    totals = (
        Feed.objects.filter(tenant_id__in=tenant_ids)
        .values("tenant_id")
        .annotate(
            kept=Sum(Least("last_seq", "retention_count", output_field=BigIntegerField())),
            ids=Sum("remembered_ids"),
        )
    )
    return {
        row["tenant_id"]: int(row["kept"] or 0) * BYTES_PER_SAMPLE
        + int(row["ids"] or 0) * BYTES_PER_ID
        for row in totals
    }


def stored_bytes_left(tenant_ids: Collection[int]) -> dict[int, int]:
    """For each tenant, the bytes it may still store under max_stored_bytes (may be < 0):
    the limit less ``stored_bytes``, in one statement (ingest asks once per batch that
    carries publish ids, so this is plain SQL rather than three ORM aggregates)."""
    from documents.models import Document
    from streams.models import Feed

    if not tenant_ids:
        return {}
    placeholders = ", ".join(["%s"] * len(tenant_ids))
    feeds, documents = Feed._meta.db_table, Document._meta.db_table
    own = QUOTAS["max_stored_bytes"].field
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT t.id, t.{own}, "
            f"(SELECT COALESCE(SUM(d.stored_bytes), 0) FROM {documents} d WHERE d.tenant_id = t.id), "
            "(SELECT COALESCE(SUM(CASE WHEN f.last_seq < f.retention_count THEN f.last_seq "
            "ELSE f.retention_count END), 0) "
            f"FROM {feeds} f WHERE f.tenant_id = t.id), "
            f"(SELECT COALESCE(SUM(f.remembered_ids), 0) FROM {feeds} f WHERE f.tenant_id = t.id) "
            f"FROM {Tenant._meta.db_table} t WHERE t.id IN ({placeholders})",
            list(tenant_ids),
        )
        rows = cursor.fetchall()
    default = settings.QUOTA_MAX_STORED_BYTES
    return {
        pk: (default if limit is None else limit)
        - int(document_bytes)
        - int(kept) * BYTES_PER_SAMPLE
        - int(ids) * BYTES_PER_ID
        for pk, limit, document_bytes, kept, ids in rows
    }


def ids_refusal(tenant_id: int, *, ids: int) -> QuotaExceeded:
    """A publish frame whose ``ids`` new publish ids would take the tenant over max_stored_bytes."""
    tenant = Tenant.objects.get(pk=tenant_id)
    return _exceeded(
        tenant,
        "max_stored_bytes",
        limit_for(tenant, "max_stored_bytes"),
        f": this frame's {ids:,} new ids would take {ids * BYTES_PER_ID:,} more "
        f"(publish ids are remembered for 24 h; send samples without ids, or wait)",
    )


def _lock(tenant: Tenant) -> None:
    # Serialises creations in one tenant, so the count below stays true until commit.
    Tenant.objects.select_for_update().filter(pk=tenant.pk).first()


def check_feed_create(tenant: Tenant, *, lock: bool = True) -> None:
    """Raise QuotaExceeded if the tenant has max_feeds feeds; call it inside the creating transaction."""
    if lock:
        _lock(tenant)
    limit = limit_for(tenant, "max_feeds")
    if feed_count(tenant) >= limit:
        raise _exceeded(tenant, "max_feeds", limit)


def check_document_create(tenant: Tenant, *, lock: bool = True) -> None:
    if lock:
        _lock(tenant)
    limit = limit_for(tenant, "max_documents")
    if document_count(tenant) >= limit:
        raise _exceeded(tenant, "max_documents", limit)


def check_stored_bytes(tenant: Tenant, *, adding: int, replacing_id: int | None = None) -> None:
    """Raise QuotaExceeded (413) if storing ``adding`` more bytes (replacing that document's) would go over."""
    limit = limit_for(tenant, "max_stored_bytes")
    used = stored_bytes(tenant, excluding_document_id=replacing_id)
    if used + adding > limit:
        raise _exceeded(
            tenant,
            "max_stored_bytes",
            limit,
            f": {used:,} stored{' besides this document' if replacing_id else ''}, "
            f"this upload is {adding:,}",
        )


# -- uploads and exports running at once ----------------------------------------


def _claim(tenant: Tenant, name: str) -> slots.Claim:
    return slots.Claim(name, str(tenant.uuid), limit_for(tenant, name), f"tenant {tenant.slug}")


def _refused(tenant: Tenant, refused: slots.Refused) -> QuotaExceeded:
    return _exceeded(tenant, refused.claim.limit, refused.claim.cap, "; retry when one is done")


def claim_slot(tenant: Tenant, name: str) -> slots.Lease:
    """Take one ``concurrent_uploads`` or ``concurrent_exports`` slot (sync); release it in finally."""
    try:
        return slots.claim_sync([_claim(tenant, name)])
    except slots.Refused as refused:
        raise _refused(tenant, refused) from None


async def claim_slot_async(tenant: Tenant, name: str) -> slots.Lease:
    try:
        return await slots.claim([_claim(tenant, name)])
    except slots.Refused as refused:
        raise _refused(tenant, refused) from None


@contextlib.contextmanager
def upload_slot(tenant: Tenant) -> Iterator[None]:
    """Hold one of the tenant's concurrent_uploads while the block runs (raises QuotaExceeded)."""
    lease = claim_slot(tenant, "concurrent_uploads")
    try:
        yield
    finally:
        lease.release_sync()


# -- samples per second -----------------------------------------------------------

# A token bucket per tenant: ``rate`` tokens a second, at most ``rate`` saved up.
# ARGV: one or more asks, each ``rate, n, size_1 .. size_n`` (the sample count of
# each of its n frames, in order). Asks are served in order, as if each were a
# call of its own at the same instant: an ask's frames are granted in order
# while tokens last, and the rest of that ask takes nothing. Returns the number
# granted of each ask. Redis's own clock, so that processes on several hosts agree.
_TAKE_SAMPLES = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens, stamp = tonumber(state[1]), tonumber(state[2])
local result = {}
local i = 1
while i <= #ARGV do
  local rate, n = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  if tokens == nil or stamp == nil then
    tokens, stamp = rate, now
  end
  tokens = math.min(rate, tokens + math.max(0, now - stamp) * rate)
  stamp = now
  local granted = 0
  for j = 1, n do
    local size = tonumber(ARGV[i + 1 + j])
    if size > tokens then break end
    tokens = tokens - size
    granted = granted + 1
  end
  result[#result + 1] = granted
  i = i + 2 + n
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now))
redis.call('EXPIRE', KEYS[1], 60)
return result
"""


def _samples_key(tenant: Tenant) -> str:
    return f"quota:samples_per_second:{tenant.uuid}"


def samples_refusal(tenant: Tenant) -> QuotaExceeded:
    return _exceeded(tenant, "samples_per_second", limit_for(tenant, "samples_per_second"))


@dataclass(frozen=True)
class SamplesAsk:
    """Frames of one publish socket asking for the tenant's samples_per_second together:
    their sample counts, in order, and the limit the socket opened with."""

    tenant: Tenant
    rate: int
    sizes: Sequence[int]


def _ask_args(asks: Sequence[SamplesAsk]) -> list[int]:
    args: list[int] = []
    for ask in asks:
        args += [ask.rate, len(ask.sizes), *ask.sizes]
    return args


def take_samples_many(asks: Sequence[SamplesAsk]) -> list[int]:
    """How many frames of each ask (in order) may be published now.

    Everything asked leaves in one round trip, one script call per tenant
    whose asks are served in order: the same answers as one call per ask, one
    after the other. The ingest writer asks once per group commit for every
    socket of its event loop, from its database thread, just before the
    transaction; to one Redis the calls are written as RESP
    (streamsite.pubsub.send_commands), since this is once per commit. Fails
    open (all granted) without Redis.
    """
    by_tenant: dict[int, list[int]] = {}
    for index, ask in enumerate(asks):
        by_tenant.setdefault(ask.tenant.pk, []).append(index)
    granted = [len(ask.sizes) for ask in asks]
    if not by_tenant:
        return granted
    calls: list[tuple[list[int], list[str | int]]] = [
        (
            indexes,
            [_samples_key(asks[indexes[0]].tenant), *_ask_args([asks[i] for i in indexes])],
        )
        for indexes in by_tenant.values()
    ]
    try:
        client = hub.sync_client()
        if cluster.is_cluster(client):  # each tenant's key on its own slot
            answers = [client.eval(_TAKE_SAMPLES, 1, *args) for _, args in calls]
        else:
            answers = pubsub.send_commands(
                client,
                [pubsub.command("EVAL", _TAKE_SAMPLES, "1", *map(str, args)) for _, args in calls],
            )
    except (redis.RedisError, OSError) as exc:
        log.warning("quotas: samples_per_second unavailable (%s); not counted", exc)
        return granted
    for (indexes, _), answer in zip(calls, answers, strict=True):
        for index, count in zip(indexes, answer, strict=True):
            granted[index] = int(count)
    return granted


def take_samples_sync(tenant: Tenant, count: int) -> bool:
    """Whether one frame of ``count`` samples may be published now, from synchronous code
    (the HTTP publish view): one ask of one frame (fails open, as take_samples_many)."""
    rate = limit_for(tenant, "samples_per_second")
    return take_samples_many([SamplesAsk(tenant, rate, [count])]) == [1]


def samples_per_second_last_minute(tenant: Tenant) -> float:
    """Samples a second the tenant's feeds persisted during the last full minute (Redis)."""
    from streams.models import Feed

    uuids = [
        str(u) for u in Feed.objects.filter(tenant_id=tenant.pk).values_list("uuid", flat=True)
    ]
    if not uuids:
        return 0.0
    minute = int(time.time() // 60) - 1
    values = cluster.mget(hub.sync_client(), [metrics.samples_key(u, minute) for u in uuids])
    return sum(int(v or 0) for v in values) / 60


# -- usage, for the admin ------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    name: str
    used: float | int | None  # None: unknown (Redis away)
    limit: int


def usage(tenant: Tenant) -> list[Usage]:
    """What the tenant uses of each quota now."""
    found: dict[str, Any] = {
        "max_feeds": feed_count(tenant),
        "max_documents": document_count(tenant),
        "max_stored_bytes": stored_bytes(tenant),
    }
    try:
        found["samples_per_second"] = samples_per_second_last_minute(tenant)
        for name in ("concurrent_uploads", "concurrent_exports"):
            found[name] = slots.held(name, str(tenant.uuid))
    except (redis.RedisError, OSError) as exc:
        log.warning("quotas: usage from Redis unavailable (%s)", exc)
    return [Usage(name, found.get(name), limit_for(tenant, name)) for name in QUOTAS]
