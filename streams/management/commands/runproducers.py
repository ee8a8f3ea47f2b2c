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

from streams.models import Producer
from streams.producers import LOOPS
from streamsite import hub, metrics

POLL_SECONDS = 1.0
RECONCILE_SECONDS = 2.0
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
    """Keeps one `runproducer` process per enabled producer; restarts crashes with backoff.

    Each producer runs in its own process, so one crashing or stalling never
    takes the others down.
    """

    def __init__(self, stdout) -> None:
        self.children: dict[str, Child] = {}
        self.stdout = stdout
        self.restarts_total = 0

    def command_for(self, producer_uuid: str) -> list[str]:
        manage = Path(settings.BASE_DIR) / "manage.py"
        return [sys.executable, str(manage), "runproducer", producer_uuid]

    def wanted(self) -> dict[str, str]:
        close_old_connections()
        rows = Producer.objects.filter(enabled=True, kind__in=list(LOOPS)).values_list(
            "uuid", "name"
        )
        return {str(uuid): name for uuid, name in rows}

    def reconcile(self, wanted: dict[str, str]) -> None:
        for producer_uuid in list(self.children):
            if producer_uuid not in wanted:
                self.stop_child(self.children.pop(producer_uuid), reason="disabled")
        for producer_uuid, name in wanted.items():
            self.children.setdefault(producer_uuid, Child(producer_uuid, name))

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


class Command(BaseCommand):
    help = (
        "Run every enabled producer, each in its own process; restart crashed ones with "
        "backoff, follow producers enabled or disabled meanwhile, stop on SIGINT/SIGTERM."
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
