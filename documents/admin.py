from django.contrib import admin

from documents.events import document_group
from documents.models import Document
from documents.services import (
    DOCUMENT_SETTINGS,
    document_delete,
    document_settings_update,
    document_share_key_revoke,
    document_share_key_rotate,
)
from tenants.admin_base import ShareKeyAdmin, ShareKeyServices, WatchingAdmin


@admin.register(Document)
class DocumentAdmin(WatchingAdmin, ShareKeyAdmin):
    """Documents are uploaded on their page or with importtsv; here operators
    see who is watching, rename, list other sites, rotate or revoke the share
    key, and delete. Every write goes through documents.services (audited,
    open connections told)."""

    share_key_services = ShareKeyServices(
        arg="document", rotate=document_share_key_rotate, revoke=document_share_key_revoke
    )
    list_display = ["name", "tenant", "version", "row_count", "has_share_key", "watching_count"]
    list_filter = [("tenant", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["tenant"]
    search_fields = ["name"]
    # Versions, rows and the shared page change only through the services,
    # under the document's row lock.
    fields = [
        "name", "tenant", "uuid", "version", "row_count", "columns", "current_page",
        "uploaded_by", "uploaded_at", "watching_now", "has_share_key", "share_can_steer",
        "allowed_origins",
    ]  # fmt: skip
    readonly_fields = [
        "tenant", "uuid", "version", "row_count", "columns", "current_page", "uploaded_by",
        "uploaded_at", "watching_now", "has_share_key", "share_can_steer",
    ]  # fmt: skip

    def presence_group(self, document: Document) -> str:
        return document_group(document.uuid)

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change):
        fresh = Document.objects.select_related("tenant").get(pk=obj.pk)
        changes = {name: getattr(obj, name) for name in DOCUMENT_SETTINGS if name in form.fields}
        document_settings_update(document=fresh, actor=request.user, **changes)

    def delete_model(self, request, obj):
        document_delete(document=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for document in queryset.select_related("tenant"):
            document_delete(document=document, actor=request.user)
