import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from documents.models import Document
from documents.services import document_create
from streams.models import Feed, FeedKind, ProducerKind
from streams.services import feed_create, producer_create
from tenants.models import Tenant
from tenants.services import tenant_create

DEMO_FEED = "Bernoulli p=0.72"
# The machine chain of the write-ups: a clock that ticks and waits for the pin's
# acknowledgement, a pin that toggles on ticks, a buzzer that fires on 0 -> 1.
CLOCK, PIN, BUZZER = "Clock", "IO pin", "Buzzer"
DEMO_DOCUMENT = "Demo measurements"


def demo_tsv(rows: int = 1000) -> bytes:
    """A small, deterministic table: ten pages of sensor readings."""
    lines = ["reading\tsensor\tcelsius\tnote"]
    for n in range(1, rows + 1):
        lines.append(
            f"{n}\tsensor-{n % 7 + 1}\t{20 + (n * 37 % 100) / 10:.1f}\t{'check' * (n % 13 == 0)}"
        )
    return ("\n".join(lines) + "\n").encode()


class Command(BaseCommand):
    help = (
        "Create (or refresh) the demo tenant and user, the Bernoulli feed, the clock -> "
        "IO pin -> buzzer chain and a shared document; print the sign-in and where each is."
    )

    def add_arguments(self, parser):
        parser.add_argument("--password", help="demo user's password (default: a new random one)")
        parser.add_argument("--base-url", default="", help="print full URLs under this one")

    def handle(self, *args, password: str | None = None, base_url: str = "", **options):
        User = get_user_model()
        user, _ = User.objects.get_or_create(username="demo")
        password = password or secrets.token_urlsafe(9)
        user.set_password(password)
        # Staff, so the demo owner can try the operator's console at /admin/ (scoped to "demo").
        user.is_staff = True
        user.save()
        tenant = Tenant.objects.filter(slug="demo").first() or tenant_create(
            slug="demo", name="Demo", owner=user
        )
        with transaction.atomic():
            bernoulli = self._feed(tenant, DEMO_FEED, FeedKind.BINARY, share=True)
            if not bernoulli.producers.exists():
                producer_create(
                    feed=bernoulli,
                    kind=ProducerKind.BERNOULLI,
                    name="demo bernoulli",
                    config={"p": 0.72, "interval_ms": 100},
                )
            clock = self._feed(tenant, CLOCK, FeedKind.NUMERIC)
            pin = self._feed(tenant, PIN, FeedKind.BINARY)
            buzzer = self._feed(tenant, BUZZER, FeedKind.BINARY, share=True)
            chain: list[tuple[Feed, ProducerKind, dict[str, object]]] = [
                (clock, ProducerKind.CLOCK, {"interval_ms": 1000, "ack_feed": str(pin.uuid)}),
                (pin, ProducerKind.IOPIN, {"source": str(clock.uuid), "chance": 0.5}),
                (buzzer, ProducerKind.BUZZER, {"source": str(pin.uuid)}),
            ]
            for feed, kind, config in chain:
                if not feed.producers.exists():
                    producer_create(feed=feed, kind=kind, name=f"demo {kind}", config=config)
            document = Document.objects.filter(tenant=tenant, name=DEMO_DOCUMENT).first()
            if document is None:
                document = document_create(
                    tenant=tenant, name=DEMO_DOCUMENT, data=demo_tsv(), share="steer"
                ).document
        self.stdout.write(f"demo user: demo / {password}")
        for label, feed in (
            ("feed", bernoulli),
            ("clock", clock),
            ("pin", pin),
            ("buzzer", buzzer),
        ):
            self.stdout.write(f"demo {label}: {base_url}{feed.get_absolute_url()}")
        self.stdout.write(
            f"demo document: {base_url}{document.get_absolute_url()} "
            f"(share link: {base_url}{document.get_absolute_url()}?key={document.share_key})"
        )
        self.stdout.write(f"operator's console: {base_url}/admin/ (same sign-in)")

    def _feed(self, tenant: Tenant, name: str, kind: str, *, share: bool = False) -> Feed:
        found = Feed.objects.filter(tenant=tenant, name=name).order_by("pk").first()
        return found or feed_create(tenant=tenant, name=name, kind=kind, share=share)
