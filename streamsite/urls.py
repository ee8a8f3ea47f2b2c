from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from streamsite import views
from tenants import views as tenant_views
from tenants.admin_base import view_on_site

_admin_overrides = [
    path(
        "r/<int:content_type_id>/<path:object_id>/",
        admin.site.admin_view(view_on_site),
        name="view-on-site",
    ),
]

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Before admin.site.urls: replaces its unscoped "View on site" redirect
    # (reverse("admin:view_on_site") still gives this path).
    path("admin/", include((_admin_overrides, "admin-overrides"))),
    path("admin/", admin.site.urls),
    path("invitations/", tenant_views.invitation_accept, name="invitation-accept"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", views.metrics_view, name="metrics"),
    path("api/openapi.json", views.openapi_view, name="openapi"),
    # Browsers ask for /favicon.ico on pages without a <link rel="icon"> (the admin's).
    path("favicon.ico", views.favicon, name="favicon"),
    path("", include("streams.urls")),
    path("", include("documents.urls")),
]
