import uuid

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from tenants.models import SharedByKey, Tenant

# Rows per DocumentChunk. A page of the default 100 rows is then one indexed
# read, and any page size at most two more; a 100,000-row upload is 1,000
# inserts. Changing it requires rewriting the chunks of every stored version.
ROWS_PER_CHUNK = 100


class Document(SharedByKey):
    """An uploaded TSV file, shared live: everyone watching sees the same page.

    ``version``, ``current_page`` and ``state_seq`` change only under a row lock
    on the document (services.py). ``state_seq`` grows by one with every change
    of the shared state (a page turn or a new version) and orders the page
    frames that viewers receive.
    """

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="documents")
    name = models.CharField(max_length=200)
    version = models.PositiveIntegerField(default=1)
    row_count = models.PositiveIntegerField(default=0)
    columns = models.JSONField(default=list)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    uploaded_at = models.DateTimeField(default=timezone.now)
    share_can_steer = models.BooleanField(
        default=False, help_text="Holders of the share key may also turn pages and upload."
    )
    current_page = models.PositiveIntegerField(default=1)
    # Characters of the current version's stored rows (their JSON), kept with
    # them, so that a tenant's max_stored_bytes is a sum over documents rather
    # than a read of every row (tenants/quotas.py).
    stored_bytes = models.PositiveBigIntegerField(default=0, editable=False)
    state_seq = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant__slug", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.tenant.slug})"

    def get_absolute_url(self) -> str:
        return reverse("document-detail", args=[self.uuid])


class ChunkRowsField(models.TextField):
    """A text column that bulk_create fills with plain VALUES lists.

    On PostgreSQL, Django 5.2 bulk-inserts through UNNEST, sending each column
    as one array literal, which psycopg escapes in Python quote by quote: for
    JSON text that made storing 100,000 rows take seconds. Django does not use
    UNNEST for a field that has ``get_placeholder``.
    """

    def get_placeholder(self, value, compiler, connection) -> str:
        return "%s"


class DocumentChunk(models.Model):
    """ROWS_PER_CHUNK consecutive rows of one version of a document.

    Rows are stored in chunks rather than one row per database row so that an
    upload of 100,000 rows is about a thousand inserts, and reading any page is
    one or two lookups in the unique index below, however long the document.
    """

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    version = models.PositiveIntegerField()
    chunk_no = models.PositiveIntegerField(help_text="0-based: rows chunk_no * ROWS_PER_CHUNK …")
    # JSON text (a list of rows, each a list of cells), not a JSONField: the
    # database never looks inside, and on PostgreSQL, jsonb made a 100,000-row
    # upload several times slower (psycopg quotes Jsonb parameters in Python).
    rows_json = ChunkRowsField()

    class Meta:
        constraints = [
            # Also the index every page read goes through.
            models.UniqueConstraint(
                fields=["document", "version", "chunk_no"], name="one_chunk_per_position"
            )
        ]

    def __str__(self) -> str:
        return f"{self.document_id} v{self.version} chunk {self.chunk_no}"
