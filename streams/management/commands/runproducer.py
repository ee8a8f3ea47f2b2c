import os
import signal
import sys
import threading
import uuid

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, close_old_connections

from streams import leases
from streams.models import Producer, ProducerKind
from streams.producers import ConfigError, ProducerFinished, loop_for, run_until_stopped
from streamsite import hub

RENEW_SECONDS = 1.0


def find_producer(ref: str) -> Producer:
    """A producer by UUID or name, or the one built-in producer of a feed named by UUID or name."""
    queryset = Producer.objects.select_related("feed", "tenant")
    try:
        return queryset.get(uuid=uuid.UUID(ref))
    except (ValueError, Producer.DoesNotExist):
        pass
    matches = list(queryset.filter(name=ref)[:2])
    if len(matches) == 1:
        return matches[0]
    if not matches:
        feed_filter: dict[str, object] = {"feed__name": ref}
        try:
            feed_filter = {"feed__uuid": uuid.UUID(ref)}
        except ValueError:
            pass
        matches = list(queryset.filter(**feed_filter).exclude(kind=ProducerKind.EXTERNAL)[:2])
        if len(matches) == 1:
            return matches[0]
    raise CommandError(
        f"No single producer, or feed with a single built-in producer, named {ref!r} "
        "(give a producer UUID: addproducer and createfeed print it)."
    )


class Command(BaseCommand):
    help = "Run one producer in the foreground until SIGINT or SIGTERM."

    def add_arguments(self, parser):
        parser.add_argument(
            "producer", help="producer UUID or name, or a feed's UUID or name (its one producer)"
        )
        parser.add_argument(
            "--lease-holder",
            help="(runproducers) write under this supervisor's lease; it renews the lease",
        )

    def handle(self, *args, producer: str, lease_holder: str | None = None, **options):
        # Only a checkout with no Redis at all is refused: a deployment's
        # producers keep committing while Redis is away (viewers catch up).
        if problem := hub.live_events_problem(ping=False):
            raise CommandError(problem)
        found = find_producer(producer)
        try:
            loop = loop_for(found)
        except ConfigError as exc:
            raise CommandError(f"{found}: {exc}") from exc
        stop = threading.Event()

        def request_stop(signum, frame):
            stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        if lease_holder:
            die_with_parent()
            keeper = None
        else:
            # Run by hand: take the lease ourselves, so that it never runs twice
            # (beside make run's supervisor, say) and renew it while we run.
            lease_holder = leases.new_holder()
            if not leases.leases_claim(holder=lease_holder, producer_uuids=[str(found.uuid)]):
                holder = leases.lease_holder_of(str(found.uuid)) or "another process"
                raise CommandError(
                    f"{found} is already running ({holder}): `runproducers`, which `make run` "
                    "starts, runs every enabled producer. Stop that or disable the producer."
                )
            keeper = threading.Thread(
                target=keep_lease, args=(lease_holder, str(found.uuid), stop), daemon=True
            )
            keeper.start()
        loop.lease_holder = lease_holder
        self.stdout.write(f"Running {found} -> feed {found.feed.uuid}", ending="\n")
        self.stdout.flush()
        status = "stopped"
        try:
            run_until_stopped(loop, stop)
        except ProducerFinished as done:
            status = f"finished: {done}"
        except leases.LeaseLost:
            status = "stopped: its lease was taken over"
        finally:
            hub.flush()  # the last samples' broadcast leaves before the process does
            close_old_connections()
            Producer.objects.filter(pk=found.pk).update(status=status)
            if keeper is not None:
                stop.set()
                keeper.join(5)
                leases.leases_release(holder=lease_holder)
        self.stdout.write(f"{found}: {status}.")


def keep_lease(holder: str, producer_uuid: str, stop: threading.Event) -> None:
    """Renew a standalone runproducer's lease until it stops; stop it if the lease is lost."""
    try:
        while not stop.wait(RENEW_SECONDS):
            try:
                if producer_uuid not in leases.leases_renew(holder=holder):
                    stop.set()
            except DatabaseError:
                close_old_connections()  # the fence refuses writes if it runs out meanwhile
    finally:
        close_old_connections()


def die_with_parent() -> None:
    """A supervised child ends with its supervisor (Linux: PR_SET_PDEATHSIG), so that a
    SIGKILLed supervisor leaves no orphan: its leases run out and another takes over."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the supervisor died before we asked
        os.kill(os.getpid(), signal.SIGTERM)
