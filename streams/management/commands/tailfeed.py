import asyncio

from django.core.management.base import BaseCommand, CommandError
from streamsite_client import (
    AccessDenied,
    Backoff,
    Client,
    Closed,
    Disconnected,
    FeedEvent,
    Hello,
    Resync,
    Sample,
)

from streams.models import Feed
from streamsite.checkout import recorded_server_url


class Command(BaseCommand):
    help = (
        "Watch a feed as a viewer and print alpha, beta and mean (or mean and variance) for "
        "each sample. When the server is away, retry every few seconds and resume without a gap."
    )

    def add_arguments(self, parser):
        parser.add_argument("feed", help="feed UUID")
        parser.add_argument(
            "--url",
            default=None,
            help="server base URL (default: where `make run` serves in this checkout, "
            "else http://127.0.0.1:8000)",
        )
        parser.add_argument("--key", help="share key (default: the feed's own)")
        parser.add_argument("--count", type=int, default=0, help="stop after N samples")
        parser.add_argument("--retry-seconds", type=float, default=3.0)

    def handle(self, *args, feed: str, url: str | None, key: str | None, **options):
        url = url or recorded_server_url() or "http://127.0.0.1:8000"
        if key is None:
            found = Feed.objects.filter(uuid=feed).values_list("share_key", flat=True).first()
            if not found:
                raise CommandError("The feed has no share key here; pass --key.")
            key = found
        tail = FeedTail(self.stdout, url=url, feed=feed, key=key, **options)
        try:
            asyncio.run(tail.run())
        except KeyboardInterrupt:
            pass
        except AccessDenied as exc:
            raise CommandError("Refused: no such feed, or a wrong key.") from exc
        except Closed as exc:
            raise CommandError(f"Stopped: {exc}") from exc


class FeedTail:
    """Prints the events of streamsite_client's FeedStream: the library reconnects,
    resumes with ``since`` and drops duplicates; this only formats."""

    def __init__(
        self, out, *, url: str, feed: str, key: str, count: int, retry_seconds: float, **_
    ):
        self.out = out
        self.count = count
        # A fixed pause between attempts, as before: no growth, no jitter.
        retry = Backoff(initial=retry_seconds, maximum=retry_seconds, jitter=0.0, slow_start=1)
        self.stream = Client(url, key=key, backoff=retry, open_timeout=5).follow(feed)
        self.printed = 0

    def say(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    async def run(self) -> None:
        async with self.stream:
            async for event in self.stream.events():
                if self.handle(event):
                    return

    def handle(self, event: FeedEvent) -> bool:
        """Print one event; True when --count samples have been printed."""
        if isinstance(event, Hello):
            self.say(f"watching {event.name} from seq {self.stream.last_seq}")
        elif isinstance(event, Resync):
            self.say(f"resync: {event.reason}")
        elif isinstance(event, Disconnected):
            if event.status is not None:
                self.say(f"server answered {event.status}; retrying")
            else:
                self.say(f"server away ({event.reason}); retrying")
        elif isinstance(event, Sample):
            stats = event.stats
            if "alpha" in stats:
                numbers = f"alpha={stats['alpha']} beta={stats['beta']} mean={stats['mean']:.4f}"
            else:
                numbers = f"mean={stats['mean']:.6g} variance={stats['variance']:.6g}"
            self.say(f"seq={event.seq} value={event.value} {numbers}")
            self.printed += 1
            return bool(self.count) and self.printed >= self.count
        return False
