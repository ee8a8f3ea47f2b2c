import uuid

from django.core.management.base import BaseCommand, CommandError

from streams.models import Feed
from streams.services import feed_stats_recompute
from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Recompute feeds' statistics (the feed's state and every retained sample's) from "
        "their stored samples, in seq order. Safe while producers publish."
    )

    def add_arguments(self, parser):
        parser.add_argument("feeds", nargs="*", metavar="FEED_UUID")
        parser.add_argument(
            "--tenant", action="append", default=[], metavar="SLUG", help="every feed of it"
        )
        parser.add_argument("--all", action="store_true", help="every feed")

    def handle(self, *args, **o):
        if not (o["feeds"] or o["tenant"] or o["all"]):
            raise CommandError("Name feeds by UUID, or give --tenant SLUG or --all.")
        feeds = Feed.objects.all()
        if not o["all"]:
            feeds = feeds.filter(pk__in=self._chosen(o["feeds"], o["tenant"]))
        # Ids first: each feed is recomputed in transactions of its own, with no
        # cursor held open across them.
        for pk in list(feeds.order_by("pk").values_list("pk", flat=True)):
            feed = Feed.objects.select_related("tenant").get(pk=pk)
            done = feed_stats_recompute(feed=feed)
            line = f"{feed.uuid} {feed.tenant.slug}/{feed.name}: {done.samples} samples, stats {done.stats}"
            if done.previous_problem:
                line += f" (were unusable: {done.previous_problem})"
            if done.excluded:
                shown = ", ".join(map(str, done.first_excluded))
                more = ", ..." if done.excluded > len(done.first_excluded) else ""
                line += f"; left out {done.excluded} outside the accepted range (seq {shown}{more})"
            self.stdout.write(line)

    def _chosen(self, feed_uuids: list[str], slugs: list[str]) -> list[int]:
        try:
            uuids = [uuid.UUID(text) for text in feed_uuids]
        except ValueError as exc:
            raise CommandError(f"Not a feed UUID: {exc}") from exc
        found = dict(Feed.objects.filter(uuid__in=uuids).values_list("uuid", "pk"))
        missing = [str(u) for u in uuids if u not in found]
        if missing:
            raise CommandError(f"No feed {', '.join(missing)}.")
        tenants = dict(Tenant.objects.filter(slug__in=slugs).values_list("slug", "pk"))
        unknown = [slug for slug in slugs if slug not in tenants]
        if unknown:
            raise CommandError(f"No tenant {', '.join(map(repr, unknown))}.")
        by_tenant = Feed.objects.filter(tenant_id__in=tenants.values()).values_list("pk", flat=True)
        return [*found.values(), *by_tenant]
