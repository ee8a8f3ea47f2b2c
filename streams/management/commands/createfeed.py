import json

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from streams.management.producerconfig import config_from_option
from streams.models import FeedKind, ProducerKind
from streams.services import feed_create, producer_create
from tenants.models import Tenant
from tenants.quotas import QuotaExceeded


class Command(BaseCommand):
    help = (
        "Create a feed (optionally shared, optionally with a producer) and print "
        '{"uuid", "key", "token"}. With --count N, create N feeds, one JSON line each.'
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--name", required=True)
        parser.add_argument("--kind", choices=FeedKind.values, default=FeedKind.BINARY)
        parser.add_argument("--share", action="store_true", help="give it a share key")
        parser.add_argument("--producer", choices=ProducerKind.values, help="producer kind")
        parser.add_argument(
            "--config",
            default="{}",
            help="producer config as JSON; source / ack_feed may name a feed of the tenant",
        )
        parser.add_argument("--count", type=int, default=1, help="create this many feeds")
        parser.add_argument("--json", action="store_true", help="print JSON only")

    def handle(self, *args, **o):
        tenant = Tenant.objects.filter(slug=o["tenant"]).first()
        if tenant is None:
            raise CommandError(f"No tenant {o['tenant']!r}.")
        if o["count"] < 1:
            raise CommandError("--count must be at least 1.")
        config = None
        if o["producer"]:
            config = config_from_option(tenant, o["producer"], o["config"])
        for index in range(1, o["count"] + 1):
            name = o["name"] if o["count"] == 1 else f"{o['name']}-{index}"
            try:
                with transaction.atomic():
                    feed = feed_create(tenant=tenant, name=name, kind=o["kind"], share=o["share"])
                    token = None
                    if o["producer"]:
                        _, token = producer_create(feed=feed, kind=o["producer"], config=config)
            except QuotaExceeded as exc:
                raise CommandError(f"Feed {name} not created: {exc.message}") from exc
            result = {"uuid": str(feed.uuid), "key": feed.share_key, "token": token}
            if o["json"]:
                self.stdout.write(json.dumps(result))
            else:
                self.stdout.write(f"Created feed {name}: {json.dumps(result)}")
