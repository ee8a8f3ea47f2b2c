"""The one place that decides who may see, publish to or manage a feed.

Every view, consumer and API call goes through these helpers. They return None
for "no such feed" and "not yours" alike, so a stranger learns nothing from a
UUID: HTTP turns None into 404, WebSockets into a refused handshake.
"""

from __future__ import annotations

import uuid as uuid_module
from dataclasses import dataclass

from django.utils import timezone

from streams.models import Feed, Producer
from tenants.access import Capabilities, get_or_none, with_caller_role


@dataclass(frozen=True, slots=True)
class FeedAccess:
    """A feed and everything the caller may do with it (one query)."""

    feed: Feed
    may: Capabilities


def feed_access(
    user, feed_uuid: uuid_module.UUID | str, *, key: str | None = None, foreign_origin=None
) -> FeedAccess | None:
    """The feed and the caller's capabilities, or None if the caller may not even view it.

    Members of the feed's tenant view it (editors and owners also publish, owners
    manage); a share key lets anyone view it, from a foreign page (the Origin of a
    cross-site WebSocket, see streamsite.security) only if its owner listed that site.
    """
    feed = get_or_none(
        with_caller_role(Feed.objects.select_related("tenant"), user), uuid=feed_uuid
    )
    if feed is None:
        return None
    may = Capabilities.decide(
        feed, getattr(feed, "caller_role", None), key=key, foreign_origin=foreign_origin
    )
    return FeedAccess(feed, may) if may.view else None


def feed_for_viewer(
    user, feed_uuid: uuid_module.UUID | str, *, key: str | None = None, foreign_origin=None
) -> Feed | None:
    """The feed if the user is a member of its tenant, or holds its share key."""
    found = feed_access(user, feed_uuid, key=key, foreign_origin=foreign_origin)
    return found.feed if found is not None else None


def feed_for_publisher(user, feed_uuid: uuid_module.UUID | str) -> Feed | None:
    found = feed_access(user, feed_uuid)
    return found.feed if found is not None and found.may.publish else None


def feed_for_manager(user, feed_uuid: uuid_module.UUID | str) -> Feed | None:
    found = feed_access(user, feed_uuid)
    return found.feed if found is not None and found.may.manage else None


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
