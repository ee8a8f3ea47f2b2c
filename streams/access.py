"""The one place that decides who may see, publish to or manage a feed.

Every view, consumer and API call goes through these helpers. They return None
for "no such feed" and "not yours" alike, so a stranger learns nothing from a
UUID: HTTP turns None into 404, WebSockets into a refused handshake.
"""

from __future__ import annotations

import uuid as uuid_module

from django.utils import timezone

from streams.models import Feed, Producer
from tenants.access import MANAGE_ROLES, PUBLISH_ROLES, VIEW_ROLES, role_in, share_key_opens


def _feed(feed_uuid: uuid_module.UUID | str) -> Feed | None:
    try:
        return Feed.objects.select_related("tenant").get(uuid=feed_uuid)
    except (Feed.DoesNotExist, ValueError):
        return None


def feed_for_viewer(
    user, feed_uuid: uuid_module.UUID | str, *, key: str | None = None, foreign_origin=None
) -> Feed | None:
    """The feed if the user is a member of its tenant, or holds its share key.

    ``foreign_origin`` is the Origin of a cross-site WebSocket (see
    streamsite.security): such a page may only use a share key its owner allowed.
    """
    feed = _feed(feed_uuid)
    if feed is None:
        return None
    if not foreign_origin and role_in(user, feed.tenant_id) in VIEW_ROLES:
        return feed
    if share_key_opens(feed, key, foreign_origin):
        return feed
    return None


def feed_for_publisher(user, feed_uuid: uuid_module.UUID | str) -> Feed | None:
    feed = _feed(feed_uuid)
    if feed is not None and role_in(user, feed.tenant_id) in PUBLISH_ROLES:
        return feed
    return None


def feed_for_manager(user, feed_uuid: uuid_module.UUID | str) -> Feed | None:
    feed = _feed(feed_uuid)
    if feed is not None and role_in(user, feed.tenant_id) in MANAGE_ROLES:
        return feed
    return None


def producer_for_token(token: str | None, feed_uuid: uuid_module.UUID | str) -> Producer | None:
    """The enabled producer whose token this is, if it publishes to this feed."""
    if not token:
        return None
    producer = (
        Producer.objects.select_related("tenant", "feed", "feed__tenant")
        .filter(token_hash=Producer.hash_token(token), enabled=True)
        .first()
    )
    if producer is None or str(producer.feed.uuid) != str(feed_uuid):
        return None
    Producer.objects.filter(pk=producer.pk).update(last_seen_at=timezone.now())
    return producer
