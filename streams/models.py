import hashlib
import json
import uuid

from django.conf import settings
from django.db import models
from django.urls import reverse

from tenants.models import SharedByKey, Tenant


def default_retention() -> int:
    return settings.FEED_DEFAULT_RETENTION


class FeedKind(models.TextChoices):
    BINARY = "binary", "Binary (0/1)"
    NUMERIC = "numeric", "Numeric"


class Feed(SharedByKey):
    """A persisted stream of samples with running statistics.

    ``last_seq`` and ``stats`` are updated in the same transaction as the samples
    they describe, under a row lock on the feed: that lock is what makes the
    sequence gap-free when several producers publish at once.
    """

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="feeds")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=FeedKind.choices, default=FeedKind.BINARY)
    retention_count = models.PositiveIntegerField(
        default=default_retention, help_text="How many of the newest samples are kept."
    )
    retention_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="If set, samples older than this are also dropped."
    )
    last_seq = models.BigIntegerField(default=0)
    stats = models.JSONField(default=dict, blank=True)
    # Rows of PublishedId for this feed, kept by ingest in the statement that
    # updates last_seq: max_stored_bytes counts them without a COUNT(*).
    remembered_ids = models.BigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant__slug", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.tenant.slug})"

    def get_absolute_url(self) -> str:
        return reverse("feed-detail", args=[self.uuid])


class Sample(models.Model):
    feed = models.ForeignKey(Feed, on_delete=models.CASCADE, related_name="samples")
    seq = models.BigIntegerField()
    value = models.FloatField()
    ts = models.FloatField(help_text="Unix seconds, as the producer gave it or as received.")
    # The feed's statistics right after this sample, as JSON text: replayed
    # frames carry the same numbers the live ones did, and the text is spliced
    # into frames as is (encoded once, when the sample is written).
    stats_json = models.TextField()

    class Meta:
        constraints = [
            # The backstop for gap-free numbering; also the index every replay uses.
            models.UniqueConstraint(fields=["feed", "seq"], name="one_sample_per_seq")
        ]

    def __str__(self) -> str:
        return f"{self.feed_id}#{self.seq}={self.value}"

    @property
    def stats(self) -> dict:
        return json.loads(self.stats_json)


class PublishedId(models.Model):
    """A producer's ``id`` of a stored sample: a resend with the same id is a duplicate.

    Kept while its sample is retained and for at least PUBLISHED_ID_WINDOW
    seconds after it was received, even once retention pruned the sample
    (services._prune); counted in ``Feed.remembered_ids``.
    """

    feed = models.ForeignKey(Feed, on_delete=models.CASCADE, related_name="published_ids")
    publish_id = models.CharField(max_length=64)
    seq = models.BigIntegerField()
    received = models.FloatField(help_text="Unix seconds when it was stored.")

    class Meta:
        constraints = [
            # Ingest's duplicate lookup, and the backstop if two writers ever raced.
            models.UniqueConstraint(fields=["feed", "publish_id"], name="one_sample_per_publish_id")
        ]
        indexes = [
            # Pruning: the ids of one feed received before a time.
            models.Index(fields=["feed", "received"], name="published_id_by_time")
        ]

    def __str__(self) -> str:
        return f"{self.feed_id}:{self.publish_id}#{self.seq}"


class ProducerKind(models.TextChoices):
    BERNOULLI = "bernoulli", "Bernoulli"
    RANDOM_WALK = "randomwalk", "Random walk"
    CLOCK = "clock", "Clock"
    IOPIN = "iopin", "IO pin"
    BUZZER = "buzzer", "Buzzer"
    EXTERNAL = "external", "External (token only)"


class Producer(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="producers")
    feed = models.ForeignKey(Feed, on_delete=models.CASCADE, related_name="producers")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=ProducerKind.choices)
    config = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    # Only a SHA-256 of the token is stored; the token itself is shown once.
    token_hash = models.CharField(max_length=64, unique=True, null=True, blank=True, editable=False)
    token_prefix = models.CharField(max_length=12, blank=True, editable=False)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=200, blank=True)
    # For producers that listen to another feed (iopin, buzzer): the last source
    # seq handled, saved with what it produced, so a restart resumes exactly there.
    cursor = models.BigIntegerField(default=0, editable=False)
    # Which runproducer runs it (streams/leases.py): only the holder of an
    # unexpired lease writes its samples, so any number of supervisors may run.
    lease_holder = models.CharField(max_length=100, blank=True, editable=False)
    lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant__slug", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    @staticmethod
    def hash_token(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()
