from django.urls import path

from documents import views

urlpatterns = [
    path("documents/", views.document_list, name="document-list"),
    path("documents/<uuid:document_uuid>/", views.document_detail, name="document-detail"),
    path("documents/<uuid:document_uuid>/upload/", views.document_upload, name="document-upload"),
    path(
        "documents/<uuid:document_uuid>/export.tsv",
        views.document_export,
        name="document-export",
    ),
    path("documents/<uuid:document_uuid>/share/", views.document_share, name="document-share"),
]
