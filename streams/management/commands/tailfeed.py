import asyncio
import json
from urllib.parse import urlencode, urlsplit, urlunsplit

import websockets
from django.core.management.base import BaseCommand, CommandError

from streams.models import Feed


class Command(BaseCommand):
    help = (
        "Watch a feed as a viewer and print alpha, beta and mean (or mean and variance) for "
        "each sample. When the server is away, retry every few seconds and resume without a gap."
    )

    def add_arguments(self, parser):
        parser.add_argument("feed", help="feed UUID")
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL")
        parser.add_argument("--key", help="share key (default: the feed's own)")
        parser.add_argument("--count", type=int, default=0, help="stop after N samples")
        parser.add_argument("--retry-seconds", type=float, default=3.0)

    def handle(self, *args, feed: str, url: str, key: str | None, **options):
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


class FeedTail:
    def __init__(
        self, out, *, url: str, feed: str, key: str, count: int, retry_seconds: float, **_
    ):
        self.out = out
        self.base = urlsplit(url)
        self.feed = feed
        self.key = key
        self.count = count
        self.retry_seconds = retry_seconds
        self.last_seq: int | None = None
        self.printed = 0

    def socket_url(self) -> str:
        query = {"key": self.key}
        if self.last_seq is not None:
            query["since"] = str(self.last_seq)
        scheme = "wss" if self.base.scheme in ("https", "wss") else "ws"
        path = f"/ws/feeds/{self.feed}/"
        return urlunsplit((scheme, self.base.netloc, path, urlencode(query), ""))

    def say(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    async def run(self) -> None:
        while True:
            try:
                async with websockets.connect(self.socket_url(), open_timeout=5) as socket:
                    async for message in socket:
                        if self.handle(json.loads(message)):
                            return
            except websockets.InvalidStatus as exc:
                if exc.response.status_code == 403:
                    raise CommandError("Refused: no such feed, or a wrong key.") from exc
                self.say(f"server answered {exc.response.status_code}; retrying")
            except (OSError, TimeoutError, websockets.WebSocketException) as exc:
                self.say(f"server away ({exc.__class__.__name__}); retrying")
            await asyncio.sleep(self.retry_seconds)

    def handle(self, frame: dict) -> bool:
        """Print one frame; True when --count samples have been printed."""
        kind = frame.get("type")
        if kind == "hello":
            if self.last_seq is None:
                self.last_seq = frame["last_seq"]
            self.say(f"watching {frame['feed']['name']} from seq {self.last_seq}")
        elif kind == "resync":
            self.say(f"resync: {frame['reason']}")
            self.last_seq = None
        elif kind == "sample" and frame["seq"] > (self.last_seq or 0):
            self.last_seq = frame["seq"]
            stats = frame["stats"]
            if "alpha" in stats:
                numbers = f"alpha={stats['alpha']} beta={stats['beta']} mean={stats['mean']:.4f}"
            else:
                numbers = f"mean={stats['mean']:.6g} variance={stats['variance']:.6g}"
            self.say(f"seq={frame['seq']} value={frame['value']} {numbers}")
            self.printed += 1
            return bool(self.count) and self.printed >= self.count
        return False
