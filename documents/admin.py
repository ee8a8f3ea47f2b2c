from django.contrib import admin

from documents.models import Document


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = ["name", "tenant", "version", "row_count", "uploaded_by", "uploaded_at"]
    search_fields = ["name", "uuid", "tenant__slug"]
    # Changed only by the services, under the document's row lock.
    readonly_fields = ["version", "row_count", "columns", "current_page", "state_seq"]
