from django.db import migrations, models
from django.db.models import Sum
from django.db.models.functions import Length


def count_stored_bytes(apps, schema_editor):
    """Existing documents: the characters of their current version's chunks."""
    Document = apps.get_model("documents", "Document")
    DocumentChunk = apps.get_model("documents", "DocumentChunk")
    for document in Document.objects.only("pk", "version").iterator():
        total = DocumentChunk.objects.filter(
            document_id=document.pk, version=document.version
        ).aggregate(total=Sum(Length("rows_json")))["total"]
        Document.objects.filter(pk=document.pk).update(stored_bytes=total or 0)


class Migration(migrations.Migration):

    dependencies = [
        ("documents", "0002_shared_by_key"),
    ]

    operations = [
        migrations.AddField(
            model_name="document",
            name="stored_bytes",
            field=models.PositiveBigIntegerField(default=0, editable=False),
        ),
        migrations.RunPython(count_stored_bytes, migrations.RunPython.noop),
    ]
