import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, close_old_connections

from streams import leases
from streams.models import Producer
from streams.producers import LOOPS
from streamsite import hub, metrics

POLL_SECONDS = 1.0
# Each pass renews this supervisor's leases and claims free ones (streams/leases.py).
RECONCILE_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 60.0
STOP_GRACE_SECONDS = 10.0


@dataclass
class Child:
    producer_uuid: str
    label: str
    process: Popen | None = None
    restarts: int = 0
    finished: bool = False
    next_start_at: float = 0.0
    started_at: float = field(default_factory=time.monotonic)


class Supervisor:
    """Keeps one `runproducer` process per enabled producer whose lease it holds;
    restarts crashes with backoff.

    Each producer runs in its own process, so one crashing or stalling never
    takes the others down. Any number of supervisors may run: each producer
    runs under exactly one of them, the holder of its lease (streams/leases.py),
    and when a supervisor dies another claims its producers once the leases
    run out.
    """

    def __init__(self, stdout) -> None:
        self.children: dict[str, Child] = {}
        self.stdout = stdout
        self.restarts_total = 0
        self.holder = leases.new_holder()

    def command_for(self, producer_uuid: str) -> list[str]:
        manage = Path(settings.BASE_DIR) / "manage.py"
        return [
            sys.executable,
            str(manage),
            "runproducer",
            producer_uuid,
            f"--lease-holder={self.holder}",
        ]

    def wanted(self) -> dict[str, str]:
        close_old_connections()
        rows = Producer.objects.filter(enabled=True, kind__in=list(LOOPS)).values_list(
            "uuid", "name"
        )
        return {str(uuid): name for uuid, name in rows}

    def reconcile(self, wanted: dict[str, str]) -> None:
        held = leases.leases_renew(holder=self.holder)
        for producer_uuid in list(self.children):
            if producer_uuid not in wanted:
                self.stop_child(self.children.pop(producer_uuid), reason="disabled")
            elif producer_uuid not in held:
                # Renewals failed for longer than a lease (the database was away):
                # someone else may run it now; its writes here are refused anyway.
                self.stop_child(self.children.pop(producer_uuid), reason="lease lost")
        if gone := held - wanted.keys():
            leases.leases_release(holder=self.holder, producer_uuids=gone)
        held &= wanted.keys()
        held |= leases.leases_claim(
            holder=self.holder, producer_uuids=[u for u in wanted if u not in held]
        )
        for producer_uuid in held:
            self.children.setdefault(producer_uuid, Child(producer_uuid, wanted[producer_uuid]))

    def tick(self) -> None:
        now = time.monotonic()
        for child in self.children.values():
            process = child.process
            if process is not None and process.poll() is not None and self.is_finished(child):
                # Done (a clock after its count): not restarted.
                child.process, child.finished = None, True
                self.stdout.write(f"producer {child.label} finished")
            elif process is not None and process.poll() is not None:
                # Crashed (or exited): back off 1, 2, 4 ... 60 s; a child that ran
                # for a minute is considered healthy again.
                if now - child.started_at > 60:
                    child.restarts = 0
                delay = min(MAX_BACKOFF_SECONDS, 2.0**child.restarts)
                child.restarts += 1
                self.restarts_total += 1
                metrics.inc_shared("producer_restarts_total")
                child.next_start_at = now + delay
                child.process = None
                self.stdout.write(
                    f"producer {child.label} exited with {process.returncode}; "
                    f"restarting in {delay:.0f} s"
                )
                Producer.objects.filter(uuid=child.producer_uuid).update(
                    status=f"crashed (exit {process.returncode}); restarting"
                )
            if child.process is None and not child.finished and now >= child.next_start_at:
                child.process = Popen(self.command_for(child.producer_uuid))
                child.started_at = now
                self.stdout.write(f"started producer {child.label}")

    def is_finished(self, child: Child) -> bool:
        status = Producer.objects.filter(uuid=child.producer_uuid).values_list("status", flat=True)
        return bool(status) and status[0].startswith("finished")

    def stop_child(self, child: Child, *, reason: str) -> None:
        if child.process is not None and child.process.poll() is None:
            child.process.terminate()
            try:
                child.process.wait(STOP_GRACE_SECONDS)
            except Exception:
                child.process.kill()
        self.stdout.write(f"stopped producer {child.label} ({reason})")

    def stop_all(self) -> None:
        for child in self.children.values():
            if child.process is not None and child.process.poll() is None:
                child.process.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in self.children.values():
            if child.process is None:
                continue
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except Exception:
                child.process.kill()
        try:
            # A clean stop hands the producers over at once (a deploy, say).
            leases.leases_release(holder=self.holder)
        except DatabaseError:
            pass  # they run out by themselves


class Command(BaseCommand):
    help = (
        "Run every enabled producer, each in its own process; restart crashed ones with "
        "backoff, follow producers enabled or disabled meanwhile, stop on SIGINT/SIGTERM. "
        "Any number of copies may run, on any hosts: each producer runs in exactly one, "
        "and the producers of a copy that dies run elsewhere within 10 s."
    )

    def handle(self, *args, **options):
        if problem := hub.live_events_problem(ping=False):  # see runproducer
            raise CommandError(problem)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        supervisor = Supervisor(self.stdout)
        next_reconcile = 0.0
        try:
            while not stop.is_set():
                try:
                    if time.monotonic() >= next_reconcile:
                        supervisor.reconcile(supervisor.wanted())
                        next_reconcile = time.monotonic() + RECONCILE_SECONDS
                    supervisor.tick()
                except DatabaseError as exc:
                    # Keep running what runs; the next pass asks the database again.
                    self.stderr.write(f"database unavailable ({exc}); keeping current producers")
                    close_old_connections()
                stop.wait(POLL_SECONDS)
        finally:
            supervisor.stop_all()
        self.stdout.write("All producers stopped.")
