"""Building blocks for the admin of tenant-owned objects (feeds, producers, documents).

- ``TenantScopedAdmin``: superusers see everything; other staff see and manage
  only the objects of tenants they *own*, and that ownership is their
  permission (no Django model permissions needed). Querysets, foreign-key
  choices and per-object checks are all scoped, so a guessed URL of another
  tenant's object answers 404, never the object.
- ``ObjectActionsAdmin``: a method marked ``@object_action`` becomes both a
  button on the change page (a POST form) and a bulk action on the list.
- ``ShareKeyAdmin``: rotate / revoke a share key through the model's services.
- ``WatchingAdmin``: who is watching an object now (streamsite.presence).
- ``show_secret_once``: a token or key is shown on the next page only.

Every write goes through a service, which audits it (tenants.services.audit_record).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import redis
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.timesince import timesince

from streamsite import presence
from tenants.models import Membership, Role, Tenant

log = logging.getLogger(__name__)


def owned_tenant_ids(request: HttpRequest) -> frozenset[int] | None:
    """The tenants this admin user may manage: None (all of them) for superusers.

    Any other active user manages the tenants they own (staff status or not:
    tenants/admin_site.py lets owners in); one who owns none manages nothing.
    Cached on the request: every permission check asks.
    """
    user = request.user
    if user.is_active and user.is_superuser:
        return None
    cached = getattr(request, "_owned_tenant_ids", None)
    if cached is None:
        cached = frozenset()
        if user.is_active:
            cached = frozenset(
                Membership.objects.filter(user_id=user.pk, role=Role.OWNER).values_list(
                    "tenant_id", flat=True
                )
            )
        request._owned_tenant_ids = cached  # type: ignore[attr-defined]  # a cache on the request
    return cached


def adopt(instance: models.Model, saved: models.Model) -> None:
    """Make the admin form's unsaved instance the object a service created.

    The add view goes on with the instance it gave to ``save_model`` (for its
    log entry and redirect), so it must become the saved object.
    """
    for field in saved._meta.concrete_fields:
        setattr(instance, field.attname, getattr(saved, field.attname))
    instance._state.adding = False
    instance._state.db = saved._state.db


def show_secret_once(request: HttpRequest, what: str, secret: str) -> None:
    """Put a new token or key on the next page; it is never stored for display again.

    Messages live in the session (settings.MESSAGE_STORAGE), not in a cookie,
    and are deleted once shown; nothing here logs the secret.
    """
    messages.success(
        request,
        format_html(
            '{} <code class="one-time-secret">{}</code> Copy it now: it will not be shown again.',
            what,
            secret,
        ),
    )


class TenantScopedAdmin(admin.ModelAdmin):
    """Scopes an admin to the tenants the signed-in staff member owns.

    ``tenant_field`` names the model's foreign key to Tenant ("" for Tenant itself).
    Subclasses narrow further (e.g. ``has_delete_permission`` → False) but
    never widen.
    """

    tenant_field = "tenant"

    def tenant_id_of(self, obj: models.Model) -> int:
        return obj.pk if not self.tenant_field else getattr(obj, f"{self.tenant_field}_id")

    def get_queryset(self, request: HttpRequest) -> models.QuerySet:
        queryset = super().get_queryset(request)
        owned = owned_tenant_ids(request)
        if owned is None:
            return queryset
        lookup = f"{self.tenant_field}__in" if self.tenant_field else "pk__in"
        return queryset.filter(**{lookup: owned})

    def _manages(self, request: HttpRequest, obj: models.Model | None) -> bool:
        owned = owned_tenant_ids(request)
        if owned is None:
            return True
        return bool(owned) and (obj is None or self.tenant_id_of(obj) in owned)

    def has_module_permission(self, request: HttpRequest) -> bool:
        if request.user.is_superuser:
            return super().has_module_permission(request)
        return self._manages(request, None)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        if request.user.is_superuser:
            return super().has_view_permission(request, obj)
        return self._manages(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        if request.user.is_superuser:
            return super().has_add_permission(request)
        return self._manages(request, None)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        if request.user.is_superuser:
            return super().has_change_permission(request, obj)
        return self._manages(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        if request.user.is_superuser:
            return super().has_delete_permission(request, obj)
        return self._manages(request, obj)

    # Django answers a missing object with a redirect to the index ("perhaps it
    # was deleted?"); another tenant's object is plainly not found.
    def visible_object_or_404(self, request: HttpRequest, object_id: str) -> models.Model:
        obj = self.get_object(request, unquote(object_id))
        if obj is None or not self.has_view_permission(request, obj):
            raise Http404("no such object")
        return obj

    def change_view(self, request, object_id, form_url="", extra_context=None):
        self.visible_object_or_404(request, object_id)
        return super().change_view(request, object_id, form_url, extra_context)

    def delete_view(self, request, object_id, extra_context=None):
        self.visible_object_or_404(request, object_id)
        return super().delete_view(request, object_id, extra_context)

    def history_view(self, request, object_id, extra_context=None):
        self.visible_object_or_404(request, object_id)
        return super().history_view(request, object_id, extra_context)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        """Offer only the tenant's own tenants, feeds, documents... as choices."""
        owned = owned_tenant_ids(request)
        related = db_field.related_model
        if owned is not None:
            if related is Tenant:
                kwargs["queryset"] = Tenant.objects.filter(pk__in=owned)
            elif any(field.name == "tenant" for field in related._meta.get_fields()):
                kwargs["queryset"] = related._default_manager.filter(tenant__in=owned)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


# -- per-object actions: buttons on the change page, bulk actions on the list --


@dataclass(frozen=True)
class ObjectAction:
    label: str
    shown: Callable[[Any], bool]
    confirm: str


def object_action(
    label: str, *, shown: Callable[[Any], bool] = lambda obj: True, confirm: str = ""
) -> Callable[[Callable], Callable]:
    """Mark a ``(self, request, obj)`` method as an action on one object.

    ``shown(obj)`` decides whether the change page offers the button;
    ``confirm`` is asked in the browser before a destructive one.
    """

    def mark(method: Callable) -> Callable:
        method.object_action = ObjectAction(label, shown, confirm)  # type: ignore[attr-defined]  # read by _action
        return method

    return mark


class ObjectActionsAdmin(TenantScopedAdmin):
    """Runs the methods named in ``object_actions`` from buttons and list actions.

    Each needs change permission on the object; the object is looked up
    through the scoped queryset, so another tenant's object is a 404.
    """

    object_actions: tuple[str, ...] = ()
    change_form_template = "admin/tenants/object_actions_change_form.html"

    def _action(self, name: str) -> ObjectAction:
        return getattr(self, name).object_action

    def _url_name(self, view: str) -> str:
        return f"{self.opts.app_label}_{self.opts.model_name}_{view}"

    def get_urls(self):
        own = [
            path(
                "<path:object_id>/act/<slug:name>/",
                self.admin_site.admin_view(self.object_action_view),
                name=self._url_name("act"),
            )
        ]
        return own + super().get_urls()

    def object_action_view(self, request: HttpRequest, object_id: str, name: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if name not in self.object_actions:
            raise Http404("no such action")
        obj = self.visible_object_or_404(request, object_id)
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        getattr(self, name)(request, obj)
        return redirect(reverse(f"admin:{self._url_name('change')}", args=[obj.pk]))

    def get_actions(
        self, request: HttpRequest
    ) -> dict[str, tuple[Callable[..., str], str, str] | None]:
        actions = super().get_actions(request)
        if not self.has_change_permission(request):
            return actions
        for name in self.object_actions:
            label = self._action(name).label
            # django-stubs has an action return str; Django takes any response or None.
            actions[name] = (partial(self._bulk, name), name, f"{label} (selected)")  # type: ignore[assignment]
        return actions

    def _bulk(self, name: str, modeladmin, request: HttpRequest, queryset) -> None:
        for obj in queryset:
            if self.has_change_permission(request, obj):
                getattr(self, name)(request, obj)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        buttons = []
        if obj is not None and self.has_change_permission(request, obj):
            for name in self.object_actions:
                action = self._action(name)
                if action.shown(obj):
                    url = reverse(f"admin:{self._url_name('act')}", args=[obj.pk, name])
                    buttons.append({"name": name, "url": url, **action.__dict__})
        context["object_action_buttons"] = buttons
        return super().render_change_form(request, context, add, change, form_url, obj)


# -- share keys --------------------------------------------------------------


@dataclass(frozen=True)
class ShareKeyServices:
    """A model's share-key services, called as ``rotate(<arg>=obj, actor=user)``.

    ``rotate`` returns the new key; both disconnect the viewers of the old one.
    """

    arg: str
    rotate: Callable[..., str]
    revoke: Callable[..., None]


class ShareKeyAdmin(ObjectActionsAdmin):
    """Rotate and revoke buttons for a model with a ``share_key``; the key is shown once.

    The key itself is never a form field (list ``has_share_key`` instead).
    """

    share_key_services: ShareKeyServices
    object_actions = ("rotate_share_key", "revoke_share_key")

    @admin.display(boolean=True, description="shared")
    def has_share_key(self, obj) -> bool:
        return bool(obj.share_key)

    @object_action(
        "Rotate share key",
        confirm="Make a new share key? Everyone watching with the old key is disconnected.",
    )
    def rotate_share_key(self, request: HttpRequest, obj) -> None:
        services = self.share_key_services
        key = services.rotate(**{services.arg: obj}, actor=request.user)
        link = request.build_absolute_uri(f"{obj.get_absolute_url()}?key={key}")
        show_secret_once(request, f"New share link for {obj}:", link)

    @object_action(
        "Revoke share key",
        shown=lambda obj: bool(obj.share_key),
        confirm="Revoke the share key? Everyone watching with it is disconnected.",
    )
    def revoke_share_key(self, request: HttpRequest, obj) -> None:
        services = self.share_key_services
        services.revoke(**{services.arg: obj}, actor=request.user)
        messages.success(request, f"The share key of {obj} is revoked; its viewers are cut off.")


# -- who is watching ---------------------------------------------------------


class WatchingAdmin:
    """Mixin: "watching now" columns for objects with live viewers (name the presence group)."""

    def presence_group(self, obj) -> str:
        raise NotImplementedError

    @admin.display(description="watching now")
    def watching_count(self, obj) -> int | str:
        try:
            return presence.watching_count(self.presence_group(obj))
        except (redis.RedisError, OSError) as exc:
            log.warning("admin: presence unavailable (%s)", exc)
            return "?"

    @admin.display(description="watching now")
    def watching_now(self, obj) -> str:
        if obj is None or obj.pk is None:
            return "-"
        try:
            viewers = presence.watching(self.presence_group(obj))
        except (redis.RedisError, OSError) as exc:
            log.warning("admin: presence unavailable (%s)", exc)
            return "Unknown: live presence (Redis) is unavailable."
        if not viewers:
            return "Nobody is watching right now."
        now = timezone.now()
        rows = []
        for viewer in viewers:
            since = datetime.fromtimestamp(viewer.get("since", 0), tz=UTC)
            who = viewer.get("user") or "share-key viewer"
            how = {"session": "signed in", "share key": "share key"}.get(viewer.get("via", ""), "?")
            when = f"{timezone.localtime(since):%Y-%m-%d %H:%M:%S %Z} ({ago(since, now)})"
            rows.append((who, how, when))
        body = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", rows)
        return format_html(
            '<table class="watching-now"><thead><tr><th>who</th><th>how</th><th>since</th>'
            "</tr></thead><tbody>{}</tbody></table>",
            body,
        )


def ago(then: datetime, now: datetime | None = None) -> str:
    """A short "how long ago": seconds under a minute, then Django's timesince."""
    now = now or timezone.now()
    seconds = (now - then).total_seconds()
    if seconds < 60:
        return f"{max(0, int(seconds))} s ago"
    return f"{timesince(then, now)} ago"


def view_on_site(request: HttpRequest, content_type_id: int, object_id: str) -> HttpResponse:
    """The admin's "View on site" redirect (``/admin/r/<type>/<pk>/``), scoped like the admin.

    Django's own (``contenttypes.views.shortcut``) redirects any staff member
    to any object's page, so walking the ids would list every tenant's feed and
    document UUIDs. Here the object must be one the staff member may view in
    the admin; anything else is not found.
    """
    from django.contrib.admin.exceptions import NotRegistered
    from django.contrib.contenttypes.models import ContentType
    from django.contrib.contenttypes.views import shortcut

    try:
        model = ContentType.objects.get_for_id(content_type_id).model_class()
    except ContentType.DoesNotExist:
        raise Http404("no such object") from None
    if model is None:  # a content type whose model is gone
        raise Http404("no such object")
    try:
        model_admin = admin.site.get_model_admin(model)
    except NotRegistered:
        raise Http404("no such object") from None
    obj = model_admin.get_object(request, unquote(object_id))
    if obj is None or not model_admin.has_view_permission(request, obj):
        raise Http404("no such object")
    return shortcut(request, content_type_id, object_id)
