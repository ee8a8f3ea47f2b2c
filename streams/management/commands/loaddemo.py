import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from streams.models import Feed, FeedKind, ProducerKind
from streams.services import feed_create, producer_create
from tenants.models import Tenant
from tenants.services import tenant_create

DEMO_FEED = "Bernoulli p=0.72"


class Command(BaseCommand):
    help = "Create (or refresh) the demo tenant, user and Bernoulli feed; print the sign-in."

    def add_arguments(self, parser):
        parser.add_argument("--password", help="demo user's password (default: a new random one)")

    def handle(self, *args, password: str | None = None, **options):
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
        feed = Feed.objects.filter(tenant=tenant, name=DEMO_FEED).first()
        if feed is None:
            feed = feed_create(tenant=tenant, name=DEMO_FEED, kind=FeedKind.BINARY, share=True)
            producer_create(
                feed=feed,
                kind=ProducerKind.BERNOULLI,
                name="demo bernoulli",
                config={"p": 0.72, "interval_ms": 100},
            )
        self.stdout.write(f"demo user: demo / {password}")
        self.stdout.write(f"demo feed: {feed.get_absolute_url()}")
        self.stdout.write("operator's console: /admin/ (same sign-in)")
