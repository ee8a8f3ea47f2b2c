"""Who may do what in a tenant. Every per-object access helper builds on this."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from importlib import import_module
from types import SimpleNamespace
from typing import Any, TypeVar

from django.conf import settings
from django.contrib import auth
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db.models import CharField, Model, OuterRef, QuerySet, Subquery, Value

from tenants.models import Membership, Role, Tenant

# Roles allowed for each capability, weakest capability first.
VIEW_ROLES = frozenset({Role.OWNER, Role.EDITOR, Role.VIEWER})
PUBLISH_ROLES = frozenset({Role.OWNER, Role.EDITOR})
MANAGE_ROLES = frozenset({Role.OWNER})


def role_in(user: AbstractBaseUser | AnonymousUser | None, tenant_id: int) -> Role | None:
    """The user's role in the tenant, or None for strangers and anonymous users."""
    if user is None or not user.is_authenticated:
        return None
    role = (
        Membership.objects.filter(tenant_id=tenant_id, user_id=user.pk)
        .values_list("role", flat=True)
        .first()
    )
    return Role(role) if role else None


@dataclass(frozen=True, slots=True)
class Capabilities:
    """Everything one caller may do with one feed or document, decided once per request.

    ``view``: see it live (follow, export); ``publish``: change it (turn a document's
    page, upload a version, publish to a feed as a member); ``manage``: its share
    settings. ``role`` is the caller's membership role, None for share-key holders
    and strangers; ``by_key`` says the share key opened it.
    """

    role: Role | None
    view: bool
    publish: bool
    manage: bool
    by_key: bool = False

    @classmethod
    def decide(
        cls,
        obj: Any,
        role: str | None,
        *,
        key: str | None,
        foreign_origin: str | None,
        key_may_publish: bool = False,
    ) -> Capabilities:
        """The capabilities of a member with ``role`` (or of a holder of ``key``) on ``obj``.

        ``obj`` has ``share_key`` and ``allowed_origins``. From a foreign page the
        session was stripped (streamsite.security), so only the key counts there.
        """
        member_role = Role(role) if role and not foreign_origin else None
        by_key = share_key_opens(obj, key, foreign_origin)
        return cls(
            role=member_role,
            view=member_role in VIEW_ROLES or by_key,
            publish=member_role in PUBLISH_ROLES or (by_key and key_may_publish),
            manage=member_role in MANAGE_ROLES,
            by_key=by_key and member_role not in VIEW_ROLES,
        )


M = TypeVar("M", bound=Model)


def with_caller_role(queryset: QuerySet[M], user: Any) -> QuerySet[M]:
    """``queryset`` annotated with ``caller_role``: the user's role in each row's tenant.

    One query for the object and the caller's membership together (a subquery),
    instead of one for the object and another per capability asked.
    """
    # django-stubs types annotate() as losing the model type; the rows are still M's.
    if user is None or not user.is_authenticated:
        return queryset.annotate(caller_role=Value(None, output_field=CharField()))  # type: ignore[return-value]
    role = Membership.objects.filter(tenant_id=OuterRef("tenant_id"), user_id=user.pk)
    return queryset.annotate(caller_role=Subquery(role.values("role")[:1]))  # type: ignore[return-value]


def get_or_none(queryset: QuerySet[M], **lookup: Any) -> M | None:
    """The one row matching ``lookup``, or None (also for a malformed UUID)."""
    try:
        return queryset.get(**lookup)
    except (ObjectDoesNotExist, ValueError, ValidationError):
        return None


def tenant_access(user: Any, tenant: Tenant) -> Capabilities:
    """The user's capabilities in a tenant as a whole (one query): members view,
    owners and editors publish, owners manage."""
    role = role_in(user, tenant.pk)
    return Capabilities(
        role=role,
        view=role in VIEW_ROLES,
        publish=role in PUBLISH_ROLES,
        manage=role in MANAGE_ROLES,
    )


def tenants_of(user: AbstractBaseUser | AnonymousUser) -> list[Tenant]:
    if not user.is_authenticated:
        return []
    return list(Tenant.objects.filter(memberships__user_id=user.pk).order_by("slug"))


def tenants_where(user: AbstractBaseUser | AnonymousUser, roles: frozenset[Role]) -> list[Tenant]:
    """The tenants in which the user holds one of these roles (e.g. PUBLISH_ROLES)."""
    if not user.is_authenticated:
        return []
    return list(
        Tenant.objects.filter(
            memberships__user_id=user.pk, memberships__role__in=list(roles)
        ).order_by("slug")
    )


def origin_allowed(allowed_origins: str, foreign_origin: str | None) -> bool:
    """May a share key be used from this origin? None means same-site or no Origin.

    ``allowed_origins`` is an object's list of other sites, one origin per line
    (feeds and documents have the same field).
    """
    if not foreign_origin:
        return True
    allowed = {line.strip().rstrip("/") for line in allowed_origins.splitlines() if line.strip()}
    return foreign_origin.rstrip("/") in allowed


def sole_owner(tenant_id: int, user_id: int) -> bool:
    """Is this user the tenant's only owner? (A tenant always keeps one.)"""
    owners = Membership.objects.filter(tenant_id=tenant_id, role=Role.OWNER)
    return not owners.exclude(user_id=user_id).exists() and owners.filter(user_id=user_id).exists()


def share_key_opens(obj, key: str | None, foreign_origin: str | None) -> bool:
    """Does ``key`` open this feed or document (``share_key``, ``allowed_origins``)?

    Compared in constant time; from another site's page only if the owner listed it.
    """
    return bool(
        key
        and obj.share_key
        and hmac.compare_digest(key.encode(), obj.share_key.encode())
        and origin_allowed(obj.allowed_origins, foreign_origin)
    )


def session_user(session_key: str | None, user: AbstractBaseUser | AnonymousUser | None):
    """Who the session that let ``user`` in belongs to now: for re-checks of open connections.

    ``user`` as it is now if that session still holds: AnonymousUser once it
    was signed out or flushed, the user's password changed (the session auth
    hash no longer matches) or the user was deactivated or deleted. Anonymous
    connections (share keys) come back as they are.
    """
    if user is None or not user.is_authenticated:
        return user
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    now = auth.get_user(SimpleNamespace(session=store))  # type: ignore[arg-type]  # reads only .session
    return now if now.is_authenticated and now.pk == user.pk else AnonymousUser()
