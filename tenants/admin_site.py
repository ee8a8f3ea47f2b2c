"""The console's admin site: tenant owners run their own tenant, without staff status.

Django's admin lets in staff only. Here the owners of a tenant are let in as
well: what they see and change is scoped to the tenants they own by
``TenantScopedAdmin`` (tenants/admin_base.py), exactly as for staff owners, so
nobody has to tick "Staff status" for them. Everyone else (viewers, editors,
users without a tenant) is refused as Django refuses non-staff users.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.http import HttpRequest

from tenants.admin_base import owned_tenant_ids


def may_use_console(request: HttpRequest) -> bool:
    user = request.user
    if not user.is_active:
        return False
    return bool(user.is_staff or owned_tenant_ids(request))


class ConsoleAuthenticationForm(AdminAuthenticationForm):
    """The admin's sign-in form, letting tenant owners in as well as staff."""

    def confirm_login_allowed(self, user) -> None:
        if user.is_active and (user.is_staff or user.memberships.filter(role="owner").exists()):
            return
        raise forms.ValidationError(
            self.error_messages["invalid_login"],
            code="invalid_login",
            params={"username": self.username_field.verbose_name},
        )


class ConsoleSite(admin.AdminSite):
    login_form = ConsoleAuthenticationForm

    def has_permission(self, request: HttpRequest) -> bool:
        return may_use_console(request)
