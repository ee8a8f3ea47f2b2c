"""Counted slots across processes (streamsite/slots.py): all or nothing, released, and
freed by themselves when their process dies."""

from __future__ import annotations

import gc
import time
import uuid

import pytest

from streamsite import slots


def owner() -> str:
    # Slots live in Redis, which parallel runs may share: an owner nobody else uses.
    return uuid.uuid4().hex


def test_a_claim_takes_every_slot_or_none_and_names_the_full_one():
    user, key = owner(), owner()
    held = slots.claim_sync([slots.Claim("connections_per_share_key", key, 1)])

    with pytest.raises(slots.Refused) as refused:
        slots.claim_sync(
            [
                slots.Claim("connections_per_user", user, 5),
                slots.Claim("connections_per_share_key", key, 1),
            ]
        )

    assert refused.value.claim.limit == "connections_per_share_key"
    # Nothing was taken for the user either.
    assert slots.held("connections_per_user", user) == 0
    held.release_sync()
    assert slots.held("connections_per_share_key", key) == 0


def test_a_released_slot_can_be_taken_again_and_release_twice_is_harmless():
    tenant = owner()
    lease = slots.claim_sync([slots.Claim("concurrent_uploads", tenant, 1)])
    lease.release_sync()
    lease.release_sync()

    again = slots.claim_sync([slots.Claim("concurrent_uploads", tenant, 1)])
    assert slots.held("concurrent_uploads", tenant) == 1
    again.release_sync()


def test_a_live_slot_is_kept_and_the_slot_of_a_crashed_holder_expires(monkeypatch):
    # A clock the test moves, so that a loaded machine cannot make a slot expire early.
    now = [time.time()]
    monkeypatch.setattr(slots, "_clock", lambda: now[0])
    tenant = owner()
    claim = slots.Claim("concurrent_exports", tenant, 1)
    alive = slots.claim_sync([claim])
    now[0] += slots.EXPIRY_SECONDS * 0.6
    slots._registry.refresh()  # the process's refresher confirms it is still held
    now[0] += slots.EXPIRY_SECONDS * 0.6  # past the claim's own expiry
    with pytest.raises(slots.Refused):
        slots.claim_sync([claim])

    # A crash: the holder is gone without releasing, so nobody confirms it any more.
    del alive
    gc.collect()
    slots._registry.refresh()
    with pytest.raises(slots.Refused):
        slots.claim_sync([claim])  # not yet expired
    now[0] += slots.EXPIRY_SECONDS * 0.6  # past the last confirmation's expiry
    taken = slots.claim_sync([claim])
    assert slots.held("concurrent_exports", tenant) == 1
    taken.release_sync()


def test_without_redis_caps_fail_open(settings, monkeypatch):
    from streamsite import hub

    monkeypatch.setattr(hub, "_sync_client", None)
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there

    # Not refused, though the cap is 0: uploads go on while Redis is away.
    lease = slots.claim_sync([slots.Claim("concurrent_uploads", owner(), 0)])
    lease.release_sync()
