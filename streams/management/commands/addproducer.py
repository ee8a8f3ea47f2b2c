import json

from django.core.management.base import BaseCommand, CommandError

from streams.management.producerconfig import config_from_option
from streams.models import ProducerKind
from streams.selectors import FeedNotFound, feed_by_reference
from streams.services import producer_create
from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Add a producer of a built-in kind to an existing feed and print "
        '{"uuid", "feed", "token"}. Feeds (--feed, and source / ack_feed in --config) are '
        "named by name or UUID within the tenant. The token (external producers) is shown "
        "only this once. A running `make run` or `runproducers` starts it within seconds."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--feed", required=True, help="feed name or UUID")
        parser.add_argument("--kind", required=True, choices=ProducerKind.values)
        parser.add_argument(
            "--config",
            default="{}",
            help='JSON, e.g. \'{"source": "pin"}\' or \'{"interval_ms": 500, "ack_feed": "pin"}\'',
        )
        parser.add_argument("--name", default="", help="producer name (default: kind for feed)")
        parser.add_argument("--disabled", action="store_true", help="create it disabled")
        parser.add_argument("--json", action="store_true", help="print JSON only")

    def handle(self, *args, **o):
        tenant = Tenant.objects.filter(slug=o["tenant"]).first()
        if tenant is None:
            raise CommandError(f"No tenant {o['tenant']!r}.")
        try:
            feed = feed_by_reference(tenant, o["feed"])
        except FeedNotFound as exc:
            raise CommandError(str(exc)) from exc
        config = config_from_option(tenant, o["kind"], o["config"])
        producer, token = producer_create(
            feed=feed, kind=o["kind"], name=o["name"], config=config, enabled=not o["disabled"]
        )
        result = {
            "uuid": str(producer.uuid),
            "feed": str(feed.uuid),
            "token": token if o["kind"] == ProducerKind.EXTERNAL else None,
        }
        if o["json"]:
            self.stdout.write(json.dumps(result))
        else:
            self.stdout.write(f"Added {producer} to feed {feed.name}: {json.dumps(result)}")
