import json
import uuid
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from documents.models import Document
from documents.parsing import ParserUnavailable
from documents.services import (
    DocumentUpload,
    document_create,
    document_rename,
    document_replace,
    document_share_set,
)
from documents.tsv import TSVError
from streamsite.hub import live_events_problem
from tenants import quotas
from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Import a TSV file as a new document, or with --document as a new version of one, "
        'and print {"uuid", "key"}. Everyone watching a replaced document moves to page 1 '
        "of the new version."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="path of the TSV file")
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--name", help="document name (default: the file's name)")
        parser.add_argument(
            "--share",
            choices=["follow", "steer"],
            help="give it a share key: holders follow, or with steer also turn pages and upload",
        )
        parser.add_argument("--document", help="UUID of a document of the tenant to replace")
        parser.add_argument("--json", action="store_true", help="print JSON only")

    def handle(self, *args, **o):
        # Checked before anything is written: viewers of a replaced document
        # must hear of the new version, so with no Redis nothing is imported.
        if problem := live_events_problem():
            raise CommandError(problem)
        tenant = Tenant.objects.filter(slug=o["tenant"]).first()
        if tenant is None:
            raise CommandError(f"No tenant {o['tenant']!r}.")
        path = Path(o["file"])
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror}.") from exc
        try:
            with quotas.upload_slot(tenant):
                upload = self._import(tenant, data, path, o)
        except TSVError as exc:
            raise CommandError(f"{path}: {exc.message}") from exc
        except ParserUnavailable as exc:
            raise CommandError(f"{path}: {exc}") from exc
        except quotas.QuotaExceeded as exc:
            raise CommandError(f"{path}: not imported: {exc.message}") from exc
        document = upload.document
        for warning in upload.warnings:
            self.stderr.write(f"{path}: {warning}")
        result = {"uuid": str(document.uuid), "key": document.share_key}
        if o["json"]:
            self.stdout.write(json.dumps(result))
        else:
            self.stdout.write(
                f"Imported {document.name} version {document.version}: "
                f"{document.row_count:,} rows, {len(document.columns)} columns. {json.dumps(result)}"
            )

    def _import(self, tenant: Tenant, data: bytes, path: Path, o: dict) -> DocumentUpload:
        if o["document"] is None:
            return document_create(
                tenant=tenant,
                name=o["name"] or path.stem[:200] or "Untitled",
                data=data,
                share=o["share"],
            )
        document = self._document(tenant, o["document"])
        quotas.check_stored_bytes(tenant, adding=len(data), replacing_id=document.pk)
        upload = document_replace(document=document, data=data, uploaded_by=None)
        if o["name"]:
            document_rename(document=upload.document, name=o["name"])
        if o["share"]:
            document_share_set(document=upload.document, share=o["share"])
        return upload

    def _document(self, tenant: Tenant, raw_uuid: str) -> Document:
        try:
            return Document.objects.get(uuid=uuid.UUID(raw_uuid), tenant=tenant)
        except (ValueError, Document.DoesNotExist):
            raise CommandError(f"No document {raw_uuid} in tenant {tenant.slug!r}.") from None
