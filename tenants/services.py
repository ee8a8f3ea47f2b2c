"""Writes to tenants and memberships, and the audit log every operator action goes to."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, User
from django.core import signing
from django.db import models, transaction

from streamsite.control import access_changed
from tenants.access import sole_owner
from tenants.models import AuditEntry, Membership, Role, Tenant

# Who did something, for the audit log: a user, or nobody (a command line). A
# signed-out request's AnonymousUser is recorded as nobody.
Actor = User | AnonymousUser | None

# Details of an audit entry are shown to every owner of the tenant: these never go in.
_SECRET_DETAIL_NAMES = frozenset({"token", "share_key", "key", "password", "secret"})


class MembershipError(ValueError):
    """A membership change that would leave a tenant without an owner."""


def audit_record(
    *,
    actor: Actor,
    tenant: Tenant | None,
    action: str,
    target: models.Model,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Log one action (``<entity>.<what happened>``) on ``target``; call it inside the change's transaction."""
    details = details or {}
    leaked = _SECRET_DETAIL_NAMES & set(details)
    if leaked:
        raise ValueError(f"audit details must not carry secrets: {sorted(leaked)}")
    target_uuid = getattr(target, "uuid", None)
    return AuditEntry.objects.create(
        actor=actor if isinstance(actor, User) else None,
        tenant=tenant,
        action=action,
        target_type=target._meta.label_lower,
        target_repr=str(target)[:200],
        target_uuid=target_uuid,
        details=details,
    )


@transaction.atomic
def tenant_create(*, slug: str, name: str = "", owner: User, actor: Actor = None) -> Tenant:
    tenant = Tenant.objects.create(slug=slug, name=name or slug)
    Membership.objects.create(tenant=tenant, user=owner, role=Role.OWNER)
    audit_record(
        actor=actor,
        tenant=tenant,
        action="tenant.created",
        target=tenant,
        details={"owner": owner.get_username()},
    )
    return tenant


@transaction.atomic
def tenant_rename(*, tenant: Tenant, name: str, actor: Actor = None) -> None:
    previous, tenant.name = tenant.name, name
    tenant.save(update_fields=["name"])
    audit_record(
        actor=actor,
        tenant=tenant,
        action="tenant.renamed",
        target=tenant,
        details={"from": previous, "to": name},
    )


@transaction.atomic
def tenant_quotas_set(*, tenant: Tenant, actor: Actor = None, **values: int | None) -> list[str]:
    """Set the tenant's own quotas (``quota_<name>``; None: the default setting).

    Returns the fields that changed. Callers check who may (superusers only: an
    owner must not raise their own tenant's quotas). Open publish sockets keep
    the samples_per_second they connected with until they reconnect.
    """
    from tenants.quotas import QUOTA_FIELDS

    unknown = set(values) - set(QUOTA_FIELDS)
    if unknown:
        raise TypeError(f"not a quota: {sorted(unknown)}")
    changed = [field for field, value in values.items() if getattr(tenant, field) != value]
    if not changed:
        return []
    details = {field: {"from": getattr(tenant, field), "to": values[field]} for field in changed}
    for field in changed:
        setattr(tenant, field, values[field])
    tenant.save(update_fields=changed)
    audit_record(
        actor=actor, tenant=tenant, action="tenant.quotas_changed", target=tenant, details=details
    )
    return changed


@transaction.atomic
def membership_set(*, tenant: Tenant, user: User, role: Role, actor: Actor = None) -> Membership:
    """Add the user to the tenant with this role, or change their role."""
    previous = (
        Membership.objects.select_for_update()
        .filter(tenant=tenant, user=user)
        .values_list("role", flat=True)
        .first()
    )
    if previous == Role.OWNER and role != Role.OWNER and sole_owner(tenant.pk, user.pk):
        raise MembershipError(f"{user.get_username()} is the last owner of {tenant.slug}")
    membership, _ = Membership.objects.update_or_create(
        tenant=tenant, user=user, defaults={"role": role}
    )
    if previous != role:
        details = {"user": user.get_username(), "role": str(role)}
        if previous is None:
            action = "membership.added"
        else:
            action, details["previous_role"] = "membership.role_changed", previous
        audit_record(actor=actor, tenant=tenant, action=action, target=membership, details=details)
    access_changed(tenant_uuid=tenant.uuid, user_id=user.pk)
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, actor: Actor = None) -> None:
    """The user leaves the tenant; their open connections to its objects are closed."""
    tenant, user = membership.tenant, membership.user
    if sole_owner(tenant.pk, user.pk):
        raise MembershipError(f"{user.get_username()} is the last owner of {tenant.slug}")
    audit_record(
        actor=actor,
        tenant=tenant,
        action="membership.removed",
        target=membership,
        details={"user": user.get_username(), "role": membership.role},
    )
    membership.delete()
    access_changed(tenant_uuid=tenant.uuid, user_id=user.pk)


def user_get_or_create(*, username: str, password: str | None = None) -> tuple[User, bool]:
    """Fetch a user, or create one with the given password (else DJANGO_SUPERUSER_PASSWORD).

    A created user without any password gets an unusable one, as createsuperuser does.
    """
    User = get_user_model()
    user = User.objects.filter(username=username).first()
    if user is not None:
        return user, False
    password = password or os.environ.get("DJANGO_SUPERUSER_PASSWORD")
    user = User.objects.create_user(username=username, password=password)
    return user, True


def user_allow_admin(*, user: User) -> None:
    """Let the user sign in to /admin/ (is_staff): they see the tenants they own there."""
    if not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])


# -- invitations: how a tenant owner adds a member ------------------------------
#
# An owner types a username and gets a link to send that person, whether or not
# such a user exists: the admin's answer is the same either way, so it cannot be
# used to find out who has an account. The invitation is a signed token
# (SECRET_KEY; no table), usable only by a signed-in user of that username, until
# it expires or anything happens to that username's membership of the tenant
# after it was issued (its own acceptance included: the audit log says so).

INVITATION_SALT = "streamsite.tenants.invitation"
INVITATION_MAX_AGE_SECONDS = 7 * 24 * 3600
_MEMBERSHIP_ACTIONS = ("membership.added", "membership.role_changed", "membership.removed")


class InvitationError(Exception):
    pass


@dataclass(frozen=True)
class Invitation:
    tenant: Tenant
    username: str
    role: Role
    inviter: User


def membership_invite(*, tenant: Tenant, username: str, role: Role, actor: User) -> str:
    """A token inviting ``username`` into the tenant with this role (audited as typed)."""
    audit_record(
        actor=actor,
        tenant=tenant,
        action="membership.invited",
        target=tenant,
        details={"username": username, "role": str(role)},
    )
    payload = {"t": tenant.pk, "u": username, "r": str(role), "by": actor.pk, "at": time.time()}
    return signing.dumps(payload, salt=INVITATION_SALT, compress=True)


def invitation_read(*, token: str, user: User) -> Invitation:
    """The invitation for this signed-in user, or InvitationError saying why not."""
    try:
        payload = signing.loads(token, salt=INVITATION_SALT, max_age=INVITATION_MAX_AGE_SECONDS)
    except signing.SignatureExpired:
        raise InvitationError("This invitation has expired; ask for a new one.") from None
    except signing.BadSignature:
        raise InvitationError("This is not a valid invitation link.") from None
    if payload["u"] != user.get_username():
        raise InvitationError("This invitation is for another account.")
    tenant = Tenant.objects.filter(pk=payload["t"]).first()
    inviter = get_user_model().objects.filter(pk=payload["by"], is_active=True).first()
    still_owner = inviter is not None and (
        inviter.is_superuser
        or Membership.objects.filter(tenant=tenant, user=inviter, role=Role.OWNER).exists()
    )
    if tenant is None or inviter is None or not still_owner:
        raise InvitationError("This invitation is no longer valid; ask for a new one.")
    superseded = AuditEntry.objects.filter(
        tenant=tenant,
        action__in=_MEMBERSHIP_ACTIONS,
        details__user=payload["u"],
        at__gt=datetime.fromtimestamp(payload["at"], tz=UTC),
    ).exists()
    if superseded:
        raise InvitationError("This invitation has been used or replaced; ask for a new one.")
    return Invitation(tenant, payload["u"], Role(payload["r"]), inviter)


@transaction.atomic
def invitation_accept(*, token: str, user: User) -> Membership:
    """Join the tenant the token invites ``user`` into (audited as added by the inviter)."""
    invitation = invitation_read(token=token, user=user)
    if Membership.objects.filter(tenant=invitation.tenant, user=user).exists():
        raise InvitationError(f"You are already a member of {invitation.tenant}.")
    return membership_set(
        tenant=invitation.tenant, user=user, role=invitation.role, actor=invitation.inviter
    )


def shared_object_settings_update(
    *,
    obj: models.Model,
    allowed: Sequence[str],
    action: str,
    actor: Actor,
    changes: dict[str, Any],
) -> list[str]:
    """Change some of a feed's or document's ``allowed`` settings; returns the names that
    changed, audited as ``action``. Call inside a transaction.

    Dropping an allowed origin disconnects the share-key viewers on that origin.
    """
    unknown = set(changes) - set(allowed)
    if unknown:
        raise TypeError(f"not a setting of {obj._meta.model_name}: {sorted(unknown)}")
    changed = [name for name, value in changes.items() if getattr(obj, name) != value]
    if not changed:
        return []
    for name in changed:
        setattr(obj, name, changes[name])
    obj.save(update_fields=changed)
    tenant = obj.tenant  # type: ignore[attr-defined]
    audit_record(actor=actor, tenant=tenant, action=action, target=obj, details={"fields": changed})
    if "allowed_origins" in changed:
        access_changed(tenant_uuid=tenant.uuid, object_uuid=obj.uuid)  # type: ignore[attr-defined]
    return changed
