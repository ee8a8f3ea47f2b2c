import signal
import threading
import uuid

from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from streams.models import Producer, ProducerKind
from streams.producers import ConfigError, ProducerFinished, loop_for, run_until_stopped
from streamsite import hub


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

    def handle(self, *args, producer: str, **options):
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
        self.stdout.write(f"Running {found} -> feed {found.feed.uuid}", ending="\n")
        self.stdout.flush()
        status = "stopped"
        try:
            run_until_stopped(loop, stop)
        except ProducerFinished as done:
            status = f"finished: {done}"
        finally:
            hub.flush()  # the last samples' broadcast leaves before the process does
            close_old_connections()
            Producer.objects.filter(pk=found.pk).update(status=status)
        self.stdout.write(f"{found}: {status}.")
