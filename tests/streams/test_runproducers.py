"""The runproducers supervisor, with real child processes."""

import io
import sys
import time

import pytest

from streams.management.commands.runproducers import Supervisor
from streams.models import Producer

pytestmark = pytest.mark.django_db(transaction=True)


class ScriptedSupervisor(Supervisor):
    """Runs a tiny script per producer instead of `runproducer`."""

    script = "import time; time.sleep(30)"

    def command_for(self, producer_uuid: str) -> list[str]:
        return [sys.executable, "-c", self.script]


def test_starts_enabled_producers_and_stops_disabled_ones(acme_feed):
    supervisor = ScriptedSupervisor(io.StringIO())
    try:
        supervisor.reconcile(supervisor.wanted())
        supervisor.tick()
        child = supervisor.children[str(acme_feed.producer.uuid)]
        assert child.process.poll() is None
        Producer.objects.filter(pk=acme_feed.producer.pk).update(enabled=False)
        supervisor.reconcile(supervisor.wanted())
        assert supervisor.children == {}
        assert child.process.poll() is not None
    finally:
        supervisor.stop_all()


def test_a_crashing_producer_is_restarted_with_growing_backoff(acme_feed):
    supervisor = ScriptedSupervisor(io.StringIO())
    supervisor.script = "raise SystemExit(3)"
    try:
        supervisor.reconcile(supervisor.wanted())
        supervisor.tick()
        child = supervisor.children[str(acme_feed.producer.uuid)]
        child.process.wait(10)
        supervisor.tick()
        assert child.restarts == 1 and child.process is None
        first_delay = child.next_start_at - time.monotonic()
        child.next_start_at = 0
        supervisor.tick()
        child.process.wait(10)
        supervisor.tick()
        second_delay = child.next_start_at - time.monotonic()
        assert 0 < first_delay <= 1.0 < second_delay <= 2.0
        assert supervisor.restarts_total == 2
        assert "crashed" in Producer.objects.get(pk=acme_feed.producer.pk).status
    finally:
        supervisor.stop_all()
