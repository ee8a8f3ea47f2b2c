import uuid

from django.conf import settings
from django.db import models


class Role(models.TextChoices):
    """What a member may do: owners manage, editors publish and steer, viewers watch."""

    OWNER = "owner", "Owner"
    EDITOR = "editor", "Editor"
    VIEWER = "viewer", "Viewer"


class Tenant(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="tenants"
    )
    # This tenant's own quotas (tenants/quotas.py); empty means the QUOTA_* setting.
    # Only superusers may change them: a tenant owner must not raise their own.
    quota_max_feeds = models.PositiveIntegerField(
        null=True, blank=True, help_text="Feeds at most (empty: QUOTA_MAX_FEEDS)."
    )
    quota_max_documents = models.PositiveIntegerField(
        null=True, blank=True, help_text="Documents at most (empty: QUOTA_MAX_DOCUMENTS)."
    )
    quota_max_stored_bytes = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        help_text="Bytes stored at most: documents' rows plus an estimate per sample "
        "(empty: QUOTA_MAX_STORED_BYTES).",
    )
    quota_samples_per_second = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Samples a second published over all its feeds (empty: QUOTA_SAMPLES_PER_SECOND).",
    )
    quota_concurrent_uploads = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Document uploads running at once (empty: QUOTA_CONCURRENT_UPLOADS).",
    )
    quota_concurrent_exports = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Document exports running at once (empty: QUOTA_CONCURRENT_EXPORTS).",
    )

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class Membership(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "user"], name="one_membership_per_user")
        ]
        ordering = ["tenant__slug", "user__username"]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant} ({self.role})"


class AuditEntry(models.Model):
    """One operator action: who did what to which object of which tenant.

    Written by the services in the same transaction as the change. ``details``
    never holds a secret (no token, no share key): at most a token's prefix.
    Entries outlive what they describe, so the actor and tenant are kept as
    nullable references and the target as a type, a text and a UUID.
    """

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Empty for actions from the command line or the system.",
    )
    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_entries"
    )
    # A short code such as "producer.token_rotated"; no choices, so a new app's
    # actions need no migration here (the admin filters on the values present).
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=100)
    target_repr = models.CharField(max_length=200)
    target_uuid = models.UUIDField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.action} {self.target_repr}"


class SharedByKey(models.Model):
    """A feed or document that can be opened with a share key, checked by
    ``tenants.access.share_key_opens`` for both."""

    share_key = models.CharField(
        max_length=64,
        null=True,
        blank=True,
        unique=True,
        help_text="Lets people without an account open it (never the UUID); revocable.",
    )
    allowed_origins = models.TextField(
        blank=True,
        help_text="Other sites (one origin per line, e.g. https://example.org) whose pages "
        "may open it with its share key.",
    )

    class Meta:
        abstract = True
