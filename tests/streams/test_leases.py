"""Producer leases (streams/leases.py): each producer runs under exactly one holder, a dead
holder's producers are claimable once its lease runs out, and a holder whose lease ran out
writes nothing."""

import io
import random
import sys
import time

import pytest
from django.core.management import CommandError, call_command

from streams import leases
from streams.management.commands.runproducers import Supervisor
from streams.models import Feed, Producer, Sample
from streams.producers import BernoulliLoop

pytestmark = pytest.mark.django_db(transaction=True)


def uuid_of(feed_with_token) -> str:
    return str(feed_with_token.producer.uuid)


def test_of_two_holders_claiming_a_producer_exactly_one_gets_it(acme_feed):
    first, second = leases.new_holder(), leases.new_holder()
    assert leases.leases_claim(holder=first, producer_uuids=[uuid_of(acme_feed)]) == {
        uuid_of(acme_feed)
    }
    assert leases.leases_claim(holder=second, producer_uuids=[uuid_of(acme_feed)]) == set()
    assert leases.lease_holder_of(uuid_of(acme_feed)) == first
    # Renewing keeps it; the other still cannot take it.
    assert leases.leases_renew(holder=first) == {uuid_of(acme_feed)}
    assert leases.leases_renew(holder=second) == set()
    assert leases.leases_claim(holder=second, producer_uuids=[uuid_of(acme_feed)]) == set()


def test_a_lease_nobody_renews_runs_out_and_its_old_holder_then_writes_nothing(
    acme_feed, monkeypatch
):
    monkeypatch.setattr(leases, "LEASE_SECONDS", 0.3)
    dead, alive = leases.new_holder(), leases.new_holder()
    leases.leases_claim(holder=dead, producer_uuids=[uuid_of(acme_feed)])
    loop = BernoulliLoop(Producer.objects.get(pk=acme_feed.producer.pk), rng=random.Random(1))
    loop.lease_holder = dead
    loop.step()  # within its lease: written
    assert Feed.objects.get(pk=acme_feed.feed.pk).last_seq == 1

    time.sleep(0.6)  # nobody renewed: expired (only ever more so on a slow machine)
    assert leases.lease_holder_of(uuid_of(acme_feed)) is None
    assert leases.leases_renew(holder=dead) == set()
    assert leases.leases_claim(holder=alive, producer_uuids=[uuid_of(acme_feed)]) == {
        uuid_of(acme_feed)
    }
    with pytest.raises(leases.LeaseLost):
        loop.step()
    # The refused step stored nothing and took no sequence number.
    assert Feed.objects.get(pk=acme_feed.feed.pk).last_seq == 1
    assert Sample.objects.filter(feed=acme_feed.feed).count() == 1


def test_a_released_lease_is_free_at_once(acme_feed):
    first, second = leases.new_holder(), leases.new_holder()
    leases.leases_claim(holder=first, producer_uuids=[uuid_of(acme_feed)])
    leases.leases_release(holder=first)
    assert leases.leases_claim(holder=second, producer_uuids=[uuid_of(acme_feed)]) == {
        uuid_of(acme_feed)
    }


def test_runproducer_by_hand_refuses_a_producer_already_running_elsewhere(acme_feed):
    supervisor = leases.new_holder()
    leases.leases_claim(holder=supervisor, producer_uuids=[uuid_of(acme_feed)])
    with pytest.raises(CommandError, match="already running"):
        call_command("runproducer", uuid_of(acme_feed), stdout=io.StringIO())
    assert Sample.objects.filter(feed=acme_feed.feed).count() == 0


class ScriptedSupervisor(Supervisor):
    def command_for(self, producer_uuid: str) -> list[str]:
        return [sys.executable, "-c", "import time; time.sleep(30)"]


def test_two_supervisors_run_each_producer_once_and_a_clean_stop_hands_over(acme_feed, world):
    one, two = ScriptedSupervisor(io.StringIO()), ScriptedSupervisor(io.StringIO())
    try:
        for supervisor in (one, two, one, two):
            supervisor.reconcile(supervisor.wanted())
            supervisor.tick()
        assert set(one.children) == {uuid_of(acme_feed)}
        assert two.children == {}

        one.stop_all()
        two.reconcile(two.wanted())
        assert set(two.children) == {uuid_of(acme_feed)}
        assert leases.lease_holder_of(uuid_of(acme_feed)) == two.holder
    finally:
        one.stop_all()
        two.stop_all()


def test_a_disabled_producer_is_stopped_and_its_lease_given_back(acme_feed):
    supervisor = ScriptedSupervisor(io.StringIO())
    try:
        supervisor.reconcile(supervisor.wanted())
        Producer.objects.filter(pk=acme_feed.producer.pk).update(enabled=False)
        supervisor.reconcile(supervisor.wanted())
        assert supervisor.children == {}
        assert leases.lease_holder_of(uuid_of(acme_feed)) is None
    finally:
        supervisor.stop_all()
