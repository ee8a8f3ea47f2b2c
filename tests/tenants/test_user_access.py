"""A user who loses access (deactivated, password changed, deleted) loses their open sockets.

Driven through the real ASGI application over the real Redis: the notice goes
to every tenant the user belongs to, and each connection re-checks its session.
"""

from __future__ import annotations

import functools
import time

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password

from streams.models import FeedKind
from streams.services import feed_create
from tenants.models import Role
from tenants.services import membership_set
from tests.conftest import session_cookie_for
from tests.documents import conftest as documents
from tests.streams.test_revocation import closed_with_revoked, still_open, viewer

pytestmark = pytest.mark.django_db(transaction=True)

acme_document = documents.acme_document  # the fixture lives with the document tests

cookie_for = database_sync_to_async(session_cookie_for)


def deactivate(user) -> None:
    user.is_active = False
    user.save()


def change_password(user) -> None:
    user.password = new_password_hash()  # set_password, with the hashing done beforehand
    user.save()


def delete(user) -> None:
    get_user_model().objects.get(pk=user.pk).delete()


@functools.cache
def new_password_hash() -> str:
    return make_password("a-new-password-nobody-knows")


CHANGES = {"deactivated": deactivate, "password-changed": change_password, "deleted": delete}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
async def test_user_losing_access_is_disconnected_everywhere_within_a_second(
    world, acme_feed, acme_document, change
):
    # bob is a viewer in acme and, here, in globex too: both tenants must hear of it.
    await database_sync_to_async(membership_set)(
        tenant=world.globex, user=world.bob, role=Role.VIEWER
    )
    globex_feed = await database_sync_to_async(feed_create)(
        tenant=world.globex, name="other", kind=FeedKind.NUMERIC
    )
    bob_cookie, alice_cookie = await cookie_for(world.bob), await cookie_for(world.alice)
    bobs = [
        await viewer(f"/ws/feeds/{acme_feed.feed.uuid}/", cookie=bob_cookie),
        await viewer(f"/ws/documents/{acme_document.uuid}/", cookie=bob_cookie),
        await viewer(f"/ws/feeds/{globex_feed.uuid}/", cookie=bob_cookie),
    ]
    alice = await viewer(f"/ws/feeds/{acme_feed.feed.uuid}/", cookie=alice_cookie)
    await database_sync_to_async(new_password_hash)()  # hashing is not part of the wait
    started = time.monotonic()
    await database_sync_to_async(change)(world.bob)
    for socket in bobs:
        assert await closed_with_revoked(socket)
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, f"closed after {elapsed:.2f} s"
    assert await still_open(alice)  # the neighbour keeps watching
    await alice.disconnect()


async def test_saving_the_user_otherwise_leaves_their_sockets_open(world, acme_feed):
    bob = await viewer(f"/ws/feeds/{acme_feed.feed.uuid}/", cookie=await cookie_for(world.bob))

    def rename(user) -> None:
        user.first_name = "Robert"
        user.save()

    await database_sync_to_async(rename)(world.bob)
    assert await still_open(bob)
    await bob.disconnect()


async def test_a_signed_out_session_loses_its_socket_at_the_next_recheck(world, acme_feed):
    """The re-check validates the session itself, not only the user."""
    from django.contrib.sessions.models import Session

    cookie = await cookie_for(world.bob)
    bob = await viewer(f"/ws/feeds/{acme_feed.feed.uuid}/", cookie=cookie)
    session_key = cookie.split("=", 1)[1]
    await database_sync_to_async(Session.objects.filter(session_key=session_key).delete)()
    # Any notice about bob makes his connections re-check (here: a role change).
    await database_sync_to_async(membership_set)(
        tenant=world.acme, user=world.bob, role=Role.EDITOR
    )
    assert await closed_with_revoked(bob)
