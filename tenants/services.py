from __future__ import annotations

import os

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction

from streamsite.control import access_changed
from tenants.models import Membership, Role, Tenant


@transaction.atomic
def tenant_create(*, slug: str, name: str = "", owner: AbstractBaseUser) -> Tenant:
    tenant = Tenant.objects.create(slug=slug, name=name or slug)
    Membership.objects.create(tenant=tenant, user=owner, role=Role.OWNER)
    return tenant


def membership_set(*, tenant: Tenant, user: AbstractBaseUser, role: Role) -> Membership:
    membership, _ = Membership.objects.update_or_create(
        tenant=tenant, user=user, defaults={"role": role}
    )
    access_changed(tenant_uuid=tenant.uuid, user_id=user.pk)
    return membership


def membership_remove(*, membership: Membership) -> None:
    """The user leaves the tenant; their open connections to its objects are closed."""
    tenant_uuid, user_id = membership.tenant.uuid, membership.user_id
    membership.delete()
    access_changed(tenant_uuid=tenant_uuid, user_id=user_id)


def user_get_or_create(
    *, username: str, password: str | None = None
) -> tuple[AbstractBaseUser, bool]:
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
