"""Admin of tenants, memberships and the audit log (scoping: tenants/admin_base.py).

Every write goes through tenants.services, which audits it and, for
memberships, closes the open connections of a removed member.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db.models import Count
from django.http import HttpRequest
from django.shortcuts import redirect
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import mark_safe

from tenants import quotas
from tenants.access import sole_owner
from tenants.admin_base import TenantScopedAdmin, adopt, show_secret_once
from tenants.models import AuditEntry, Membership, Role, Tenant
from tenants.services import (
    MembershipError,
    membership_invite,
    membership_remove,
    membership_set,
    tenant_create,
    tenant_quotas_set,
    tenant_rename,
)

admin.site.site_header = "Streamsite operations"
admin.site.site_title = "Streamsite admin"
admin.site.index_title = "Operator's console"


def _existing_user(username: str):
    user = get_user_model().objects.filter(username=username.strip()).first()
    if user is None:
        raise forms.ValidationError("There is no user with this username.")
    return user


class TenantAddForm(forms.ModelForm):
    owner = forms.CharField(help_text="Username of the tenant's first owner (an existing user).")

    class Meta:
        model = Tenant
        fields = ["slug", "name"]

    def clean_owner(self):
        return _existing_user(self.cleaned_data["owner"])


def _amount(name: str, value: float | int | None) -> str:
    if value is None:
        return "?"
    if name == "max_stored_bytes":
        return filesizeformat(value)
    if isinstance(value, float):
        return f"{value:,.1f}"
    return f"{value:,}"


def _usage_text(usage: quotas.Usage) -> str:
    return f"{_amount(usage.name, usage.used)} / {_amount(usage.name, usage.limit)}"


@admin.register(Tenant)
class TenantAdmin(TenantScopedAdmin):
    """Tenants, their members and their quotas against what they use.

    Quotas (``quota_*``) are editable by superusers only: the owner of a tenant
    sees them, read-only, and can never raise their own.
    """

    tenant_field = ""
    list_display = [
        "slug", "name", "member_count_link", "feeds_usage", "documents_usage", "stored_usage",
        "samples_usage", "created_at",
    ]  # fmt: skip
    search_fields = ["slug", "name"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(member_count=Count("memberships"))

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [(None, {"fields": ["slug", "name", "owner"]})]
        return [
            (None, {"fields": ["slug", "name", "uuid", "created_at", "member_list"]}),
            (
                "Quotas",
                {
                    "fields": ["usage", *quotas.QUOTA_FIELDS],
                    "description": "Empty: the server's default (the QUOTA_* setting). "
                    "Only superusers change them.",
                },
            ),
        ]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        fixed = ["slug", "uuid", "created_at", "member_list", "usage"]
        return fixed if request.user.is_superuser else [*fixed, *quotas.QUOTA_FIELDS]

    def _usage(self, tenant: Tenant) -> dict[str, quotas.Usage]:
        # Computed once per tenant and page: the list shows four columns of it.
        cached = getattr(tenant, "_quota_usage", None)
        if cached is None:
            cached = tenant._quota_usage = {u.name: u for u in quotas.usage(tenant)}  # type: ignore[attr-defined]  # a cache on the row
        return cached

    @admin.display(description="feeds")
    def feeds_usage(self, tenant: Tenant) -> str:
        return _usage_text(self._usage(tenant)["max_feeds"])

    @admin.display(description="documents")
    def documents_usage(self, tenant: Tenant) -> str:
        return _usage_text(self._usage(tenant)["max_documents"])

    @admin.display(description="stored")
    def stored_usage(self, tenant: Tenant) -> str:
        return _usage_text(self._usage(tenant)["max_stored_bytes"])

    @admin.display(description="samples/s (last minute)")
    def samples_usage(self, tenant: Tenant) -> str:
        return _usage_text(self._usage(tenant)["samples_per_second"])

    @admin.display(description="usage now")
    def usage(self, tenant: Tenant) -> str:
        rows = [
            (usage.name, _amount(usage.name, usage.used), _amount(usage.name, usage.limit))
            for usage in self._usage(tenant).values()
        ]
        return format_html(
            '<table class="quota-usage"><thead><tr><th>limit</th><th>used</th><th>quota</th>'
            "</tr></thead><tbody>{}</tbody></table>",
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
        )

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = TenantAddForm
        return super().get_form(request, obj, **kwargs)

    # Not named "members": list_display would show the model's M2M field of that name.
    @admin.display(description="members", ordering="member_count")
    def member_count_link(self, tenant: Tenant) -> str:
        url = reverse("admin:tenants_membership_changelist") + f"?tenant__id__exact={tenant.pk}"
        # member_count: annotated by get_queryset.
        return format_html('<a href="{}">{}</a>', url, tenant.member_count)  # type: ignore[attr-defined]

    @admin.display(description="members")
    def member_list(self, tenant: Tenant) -> str:
        rows = [
            (reverse("admin:tenants_membership_change", args=[m.pk]), m.user, m.get_role_display())
            for m in tenant.memberships.select_related("user")
        ]
        add = reverse("admin:tenants_membership_add") + f"?tenant={tenant.pk}"
        return format_html(
            '{}<br><a href="{}">Add a member</a>',
            format_html_join(mark_safe("<br>"), '<a href="{}">{}</a> ({})', rows),
            add,
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A new tenant has no owner among the staff yet: superusers create them.
        return request.user.is_superuser and super().has_add_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # cascading deletes would not notify open connections

    def save_model(self, request, obj, form, change):
        if change:
            fresh = Tenant.objects.get(pk=obj.pk)
            if fresh.name != obj.name:
                tenant_rename(tenant=fresh, name=obj.name, actor=request.user)
            if request.user.is_superuser:  # the fields are read-only for everyone else
                values = {f: getattr(obj, f) for f in quotas.QUOTA_FIELDS if f in form.fields}
                tenant_quotas_set(tenant=fresh, actor=request.user, **values)
        else:
            tenant = tenant_create(
                slug=obj.slug, name=obj.name, owner=form.cleaned_data["owner"], actor=request.user
            )
            adopt(obj, tenant)


class MembershipAddForm(forms.ModelForm):
    """A superuser's form: adds an existing user at once (superusers see every user anyway)."""

    username = forms.CharField(help_text="The user to add (their exact username).")

    class Meta:
        model = Membership
        fields = ["tenant", "role"]

    def clean_username(self):
        return _existing_user(self.cleaned_data["username"])

    def clean(self):
        cleaned = super().clean()
        tenant, user = cleaned.get("tenant"), cleaned.get("username")
        if tenant and user and Membership.objects.filter(tenant=tenant, user=user).exists():
            raise forms.ValidationError(
                f"{user.get_username()} is already a member of {tenant}; change their role there."
            )
        return cleaned


class MembershipInviteForm(forms.ModelForm):
    """A tenant owner's form: invites a username, whether or not it exists.

    Its answer must not depend on whether the username exists, or an owner
    could probe who has an account: it never looks the user up. Only members of
    the owner's own tenant, whom the owner already sees, are told apart.
    """

    username = forms.CharField(
        max_length=150,
        help_text="Username of the person to invite. You get a link to send them; they "
        "join when they open it signed in as that username. The answer is the same "
        "whether or not such a user exists.",
    )

    class Meta:
        model = Membership
        fields = ["tenant", "role"]

    def clean_username(self):
        return self.cleaned_data["username"].strip()

    def clean(self):
        cleaned = super().clean()
        tenant, username = cleaned.get("tenant"), cleaned.get("username")
        if tenant and username and tenant.memberships.filter(user__username=username).exists():
            raise forms.ValidationError(
                f"{username} is already a member of {tenant}; change their role there."
            )
        return cleaned


class MembershipChangeForm(forms.ModelForm):
    class Meta:
        model = Membership
        fields = ["role"]

    def clean_role(self):
        role = self.cleaned_data["role"]
        member = self.instance  # still the saved values during clean()
        if role != Role.OWNER and sole_owner(member.tenant_id, member.user_id):
            raise forms.ValidationError("A tenant keeps at least one owner.")
        return role


@admin.register(Membership)
class MembershipAdmin(TenantScopedAdmin):
    list_display = ["user", "tenant", "role", "created_at"]
    list_filter = ["role", ("tenant", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["user", "tenant"]
    search_fields = ["user__username"]

    def get_fields(self, request, obj=None):
        return ["tenant", "username", "role"] if obj is None else ["tenant", "user", "role"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else ["tenant", "user"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is not None:
            kwargs["form"] = MembershipChangeForm
        else:
            kwargs["form"] = (
                MembershipAddForm if request.user.is_superuser else MembershipInviteForm
            )
        return super().get_form(request, obj, **kwargs)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        if obj is not None and sole_owner(obj.tenant_id, obj.user_id):
            return False  # a tenant keeps at least one owner
        return super().has_delete_permission(request, obj)

    def save_model(self, request, obj, form, change):
        if isinstance(form, MembershipInviteForm):
            username = form.cleaned_data["username"]
            token = membership_invite(
                tenant=obj.tenant, username=username, role=Role(obj.role), actor=request.user
            )
            path = f"{reverse('invitation-accept')}?{urlencode({'token': token})}"
            link = request.build_absolute_uri(path)
            request._streamsite_invitation = (username, link)
            return
        user = obj.user if change else form.cleaned_data["username"]
        membership = membership_set(
            tenant=obj.tenant, user=user, role=Role(obj.role), actor=request.user
        )
        adopt(obj, membership)

    # An invitation saves no membership: no admin log entry, and back to the list.
    def log_addition(self, request, obj, message):
        if not hasattr(request, "_streamsite_invitation"):
            return super().log_addition(request, obj, message)
        return None

    def response_add(self, request, obj, post_url_continue=None):
        invitation = getattr(request, "_streamsite_invitation", None)
        if invitation is None:
            return super().response_add(request, obj, post_url_continue)
        username, link = invitation
        show_secret_once(
            request,
            f"Invitation for {username} to {obj.tenant} as {obj.get_role_display().lower()}: "
            "send them this link; it works once, within 7 days, for whoever is signed in as "
            f"{username} (if there is no such user, it does nothing).",
            link,
        )
        return redirect("admin:tenants_membership_changelist")

    def delete_model(self, request, obj):
        membership_remove(membership=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for membership in queryset.select_related("tenant", "user"):
            try:
                membership_remove(membership=membership, actor=request.user)
            except MembershipError as exc:
                messages.error(request, f"Not removed: {exc}.")


@admin.register(AuditEntry)
class AuditEntryAdmin(TenantScopedAdmin):
    """The audit log: read-only, newest first."""

    list_display = ["at", "tenant", "actor", "action", "target_repr", "details"]
    list_filter = ["action", ("tenant", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["tenant", "actor"]
    search_fields = ["target_repr", "actor__username", "action"]
    fields = readonly_fields = (
        "at", "tenant", "actor", "action", "target_type", "target_repr", "target_uuid", "details"
    )  # fmt: skip

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
