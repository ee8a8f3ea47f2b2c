"""Changes that end access, announced: to a user (to every tenant they belong to), deletions.

Deactivating a user, changing their password (which invalidates their other
sessions) or deleting them must close their open connections within a second,
like removing a membership does. Connections re-check with the session's user
as it is now (streamsite.control.user_now).
"""

from __future__ import annotations

from django.conf import settings
from django.db.models.signals import post_save, pre_delete, pre_save
from django.dispatch import receiver

from streamsite.control import access_changed
from tenants.models import Tenant

_ACCESS_FIELDS = frozenset({"is_active", "password"})


def user_access_changed(*, user_id: int) -> None:
    """After commit, tell the connections of every tenant the user belongs to."""
    for tenant_uuid in Tenant.objects.filter(memberships__user_id=user_id).values_list(
        "uuid", flat=True
    ):
        access_changed(tenant_uuid=tenant_uuid, user_id=user_id)


@receiver(pre_save, sender=settings.AUTH_USER_MODEL)
def _note_access_change(sender, instance, update_fields=None, **kwargs) -> None:
    # Only saves that may touch these fields pay for the look-up (last_login
    # updates at every sign-in do not).
    instance._streamsite_access_changed = False
    if instance.pk is None or (
        update_fields is not None and not _ACCESS_FIELDS & set(update_fields)
    ):
        return
    before = sender.objects.filter(pk=instance.pk).values("is_active", "password").first()
    instance._streamsite_access_changed = before is not None and (
        before["password"] != instance.password or (before["is_active"] and not instance.is_active)
    )


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def _announce_access_change(sender, instance, **kwargs) -> None:
    if getattr(instance, "_streamsite_access_changed", False):
        user_access_changed(user_id=instance.pk)


@receiver(pre_delete, sender=settings.AUTH_USER_MODEL)
def _announce_deletion(sender, instance, **kwargs) -> None:
    # Before the cascade removes the memberships that name the tenants.
    user_access_changed(user_id=instance.pk)


@receiver(pre_delete, sender="streams.Feed")
@receiver(pre_delete, sender="documents.Document")
def _announce_object_deletion(sender, instance, **kwargs) -> None:
    # Its viewers re-check (and are closed), and no handshake reuses an answer about it.
    access_changed(tenant_uuid=instance.tenant.uuid, object_uuid=instance.uuid)


@receiver(pre_delete, sender="streams.Producer")
def _announce_producer_deletion(sender, instance, **kwargs) -> None:
    access_changed(tenant_uuid=instance.tenant.uuid, producer_uuid=instance.uuid)
