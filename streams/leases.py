"""Producer leases: each enabled built-in producer runs in exactly one place at a time.

Any number of ``runproducers`` supervisors may run, on any hosts. A producer's
row says who runs it (``lease_holder``) and until when (``lease_until``, the
database's clock, so hosts' clocks need not agree). A supervisor claims the
producers whose lease is free or expired, renews its own every second, and
starts a ``runproducer`` child per lease it holds. When a supervisor dies
(SIGKILL, a lost host), nobody renews its leases; they expire after
LEASE_SECONDS and another supervisor claims them.

Expiry alone would leave a window in which a stalled holder (paused, or
renewing no more) still writes. The fence closes it: every write of a leased
producer starts, in its own transaction, with a conditional UPDATE of the
producer row ``WHERE lease_holder = me AND lease_until > now``. That statement
takes the row lock a claim needs too, so a claim waits for a write in flight
and a write after expiry is refused (``LeaseLost``: the child stops). Two
holders can therefore never both write, even with a supervisor frozen for a
minute.

The lease lives in the database, not Redis, because producers already need the
database to write and keep writing while Redis is away.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterable
from datetime import timedelta

from django.db.models import DateTimeField, ExpressionWrapper, Q, Value
from django.db.models.functions import Now

from streams.models import Producer

# A dead holder's producers run elsewhere within LEASE_SECONDS + one pass (1 s) + a
# child's start (about 2 s): 7 s. Renewed every second, so 3 s of database trouble pass.
LEASE_SECONDS = 4.0


class LeaseLost(Exception):
    """This process no longer holds the producer's lease: it must stop writing."""


def new_holder() -> str:
    """A name for one supervisor (or one standalone runproducer): host, pid and a nonce."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _until() -> ExpressionWrapper:
    return ExpressionWrapper(
        Now() + Value(timedelta(seconds=LEASE_SECONDS)), output_field=DateTimeField()
    )


def _free() -> Q:
    return Q(lease_holder="") | Q(lease_until__isnull=True) | Q(lease_until__lte=Now())


def leases_claim(*, holder: str, producer_uuids: Iterable[str]) -> set[str]:
    """Take the lease of each producer whose lease is free or expired; returns those taken
    (as UUID strings).

    One SELECT finds the free ones, then one conditional UPDATE each (a row lock
    at a time: claims by two supervisors cannot deadlock, and of two claiming
    the same producer exactly one updates it).
    """
    free = Producer.objects.filter(uuid__in=list(producer_uuids)).filter(_free())
    taken: set[str] = set()
    for producer_uuid in free.values_list("uuid", flat=True):
        updated = (
            Producer.objects.filter(uuid=producer_uuid)
            .filter(_free())
            .update(lease_holder=holder, lease_until=_until())
        )
        if updated:
            taken.add(str(producer_uuid))
    return taken


def leases_renew(*, holder: str) -> set[str]:
    """Extend every unexpired lease of ``holder``; returns the producers it still holds."""
    Producer.objects.filter(lease_holder=holder, lease_until__gt=Now()).update(lease_until=_until())
    held = Producer.objects.filter(lease_holder=holder, lease_until__gt=Now())
    return {str(producer_uuid) for producer_uuid in held.values_list("uuid", flat=True)}


def leases_release(*, holder: str, producer_uuids: Iterable[str] | None = None) -> None:
    """Give leases back (a clean stop): another supervisor takes them at once."""
    queryset = Producer.objects.filter(lease_holder=holder)
    if producer_uuids is not None:
        queryset = queryset.filter(uuid__in=list(producer_uuids))
    queryset.update(lease_holder="", lease_until=None)


def lease_fence(*, producer_id: int, holder: str) -> None:
    """Call first inside the transaction of a leased producer's write.

    Locks the producer row while the lease is valid (a competing claim waits
    for this transaction) and raises LeaseLost when it is not: the caller's
    transaction then writes nothing.
    """
    # A write does not renew: only the supervisor's renewal does, so that a child
    # whose supervisor died stops writing when the lease runs out.
    held = Producer.objects.filter(
        pk=producer_id, lease_holder=holder, lease_until__gt=Now()
    ).update(lease_holder=holder)
    if not held:
        raise LeaseLost(f"the lease of producer {producer_id} is no longer {holder}'s")


def lease_holder_of(producer_uuid: str) -> str | None:
    """Who holds the producer's lease now (None when it is free or expired)."""
    row = (
        Producer.objects.filter(uuid=producer_uuid, lease_until__gt=Now())
        .exclude(lease_holder="")
        .values_list("lease_holder", flat=True)
        .first()
    )
    return row
