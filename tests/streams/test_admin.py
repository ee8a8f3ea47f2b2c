"""Admin of feeds and producers: scoping, actions through the services, secrets shown once."""

import logging
import re
import time

import pytest
import redis
from django.test import Client
from django.urls import reverse

from streams import access
from streams.models import Feed, Producer
from streamsite import hub, metrics, presence
from tenants.models import AuditEntry

pytestmark = pytest.mark.django_db

SECRET_SHOWN = re.compile(r'<code class="one-time-secret">([^<]+)</code>')


def shown(response) -> list:
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def act(client, producer_or_feed, name: str):
    """Press an object's action button; returns the page it leads to."""
    model = producer_or_feed._meta.model_name
    url = reverse(f"admin:streams_{model}_act", args=[producer_or_feed.pk, name])
    return client.post(url, follow=True)


def secret_on(response) -> str | None:
    found = SECRET_SHOWN.search(response.content.decode())
    return found.group(1) if found else None


# -- scoping -----------------------------------------------------------------


def test_staff_owner_sees_only_their_tenants_feeds_and_producers(
    world, acme_feed, globex_feed, staff_client
):
    charlie = staff_client(world.charlie)
    assert shown(charlie.get(reverse("admin:streams_feed_changelist"))) == [globex_feed.feed]
    producers = shown(charlie.get(reverse("admin:streams_producer_changelist")))
    assert producers == [globex_feed.producer]


def test_another_tenants_feed_and_producer_are_not_found_by_url(
    world, acme_feed, globex_feed, staff_client
):
    charlie = staff_client(world.charlie)
    feed, producer = acme_feed.feed, acme_feed.producer
    share_key = feed.share_key
    for url in [
        reverse("admin:streams_feed_change", args=[feed.pk]),
        reverse("admin:streams_feed_history", args=[feed.pk]),
        reverse("admin:streams_producer_change", args=[producer.pk]),
        reverse("admin:streams_producer_delete", args=[producer.pk]),
    ]:
        assert charlie.get(url).status_code == 404, url
    for name in ["rotate_token", "revoke_token", "disable"]:
        assert act(charlie, producer, name).status_code == 404
    assert act(charlie, feed, "revoke_share_key").status_code == 404
    # A bulk action naming acme's producer finds nothing to act on.
    charlie.post(
        reverse("admin:streams_producer_changelist"),
        {"action": "disable", "_selected_action": [producer.pk]},
    )
    producer.refresh_from_db()
    feed.refresh_from_db()
    assert producer.enabled and feed.share_key == share_key
    assert access.producer_for_token(acme_feed.token, feed.uuid) is not None


def test_feed_choices_of_a_new_producer_are_the_owners_feeds(
    world, acme_feed, globex_feed, staff_client
):
    charlie = staff_client(world.charlie)
    form = charlie.get(reverse("admin:streams_producer_add")).context["adminform"].form
    assert list(form.fields["feed"].queryset) == [globex_feed.feed]
    response = charlie.post(
        reverse("admin:streams_producer_add"),
        {"feed": acme_feed.feed.pk, "kind": "external", "enabled": "on"},
    )
    assert "feed" in response.context["adminform"].form.errors
    assert Producer.objects.filter(feed=acme_feed.feed).count() == 1


def test_superuser_sees_every_feed_and_producer(acme_feed, globex_feed, admin_client):
    feeds = shown(admin_client.get(reverse("admin:streams_feed_changelist")))
    assert set(feeds) == {acme_feed.feed, globex_feed.feed}
    producers = shown(admin_client.get(reverse("admin:streams_producer_changelist")))
    assert set(producers) == {acme_feed.producer, globex_feed.producer}


def test_feeds_and_producers_cannot_be_deleted_from_the_admin(world, acme_feed, staff_client):
    alice = staff_client(world.alice)
    for url in [
        reverse("admin:streams_feed_delete", args=[acme_feed.feed.pk]),
        reverse("admin:streams_producer_delete", args=[acme_feed.producer.pk]),
    ]:
        assert alice.post(url, {"post": "yes"}).status_code == 403
    assert Producer.objects.filter(pk=acme_feed.producer.pk).exists()


# -- producers ---------------------------------------------------------------


def test_created_producer_shows_its_token_once(world, acme_feed, staff_client):
    alice = staff_client(world.alice)
    response = alice.post(
        reverse("admin:streams_producer_add"),
        {
            "feed": acme_feed.feed.pk,
            "name": "sensor",
            "kind": "external",
            "enabled": "on",
            "_continue": "1",
        },
        follow=True,
    )
    token = secret_on(response)
    producer = Producer.objects.get(name="sensor")
    assert token and access.producer_for_token(token, acme_feed.feed.uuid) == producer
    # The next page no longer has it, and the change page never shows more than the prefix.
    again = alice.get(reverse("admin:streams_producer_change", args=[producer.pk]))
    assert token not in again.content.decode() and producer.token_prefix in again.content.decode()
    entry = AuditEntry.objects.get(action="producer.created", target_uuid=producer.uuid)
    assert entry.actor == world.alice and entry.details["token_prefix"] == producer.token_prefix


@pytest.mark.parametrize(
    "kind, fields, field, error",
    [
        ("bernoulli", {"p": "2", "interval_ms": "100"}, "p", "less than or equal to 1"),
        ("bernoulli", {"p": "0.5", "interval_ms": "0"}, "interval_ms", "greater than or equal"),
        ("iopin", {"source": "999999", "chance": "0.5"}, "source", "Select a valid choice"),
    ],
)
def test_producer_settings_are_typed_and_checked(
    world, acme_feed, staff_client, kind, fields, field, error
):
    alice = staff_client(world.alice)
    response = alice.post(
        reverse("admin:streams_producer_add"),
        {"feed": acme_feed.feed.pk, "kind": kind, "enabled": "on", **fields},
    )
    assert error in str(response.context["adminform"].form.errors[field])
    assert Producer.objects.count() == 1


def test_each_kind_has_its_own_form_with_feed_pickers_showing_name_and_uuid(
    world, acme_feed, globex_feed, staff_client
):
    alice = staff_client(world.alice)
    form = (
        alice.get(reverse("admin:streams_producer_add") + "?kind=clock").context["adminform"].form
    )
    assert {"interval_ms", "count", "ack_feed", "ack_timeout_ms"} <= set(form.fields)
    assert "p" not in form.fields and "config" not in form.fields
    choices = [label for _, label in form.fields["ack_feed"].choices]
    assert f"coin · acme · {acme_feed.feed.uuid}" in choices
    assert not any(str(globex_feed.feed.uuid) in label for label in choices)


def test_the_chain_is_built_with_pickers(world, acme_feed, staff_client):
    from streams.models import FeedKind
    from streams.services import feed_create

    alice = staff_client(world.alice)
    clock = feed_create(tenant=world.acme, name="clock", kind=FeedKind.NUMERIC)
    pin = feed_create(tenant=world.acme, name="pin")
    add = reverse("admin:streams_producer_add")
    for feed, kind, fields in (
        (pin, "iopin", {"source": clock.pk, "chance": "0.5"}),
        (clock, "clock", {"interval_ms": "500", "count": "0", "ack_feed": pin.pk,
                          "ack_timeout_ms": "5000"}),
    ):  # fmt: skip
        response = alice.post(add, {"feed": feed.pk, "kind": kind, "enabled": "on", **fields})
        assert response.status_code == 302, response.context["adminform"].form.errors
    assert Producer.objects.get(feed=pin).config["source"] == str(clock.uuid)
    assert Producer.objects.get(feed=clock).config["ack_feed"] == str(pin.uuid)


def test_a_listener_cannot_follow_another_tenants_feed(world, acme_feed, globex_feed, staff_client):
    alice = staff_client(world.alice)
    response = alice.post(
        reverse("admin:streams_producer_add"),
        {
            "feed": acme_feed.feed.pk,
            "kind": "iopin",
            "source": globex_feed.feed.pk,
            "chance": "0.5",
            "enabled": "on",
        },
    )
    assert "Select a valid choice" in str(response.context["adminform"].form.errors["source"])


def test_rotating_a_token_shows_the_new_one_once_and_the_old_one_stops_working(
    world, acme_feed, staff_client
):
    alice = staff_client(world.alice)
    page = act(alice, acme_feed.producer, "rotate_token")
    new_token = secret_on(page)
    feed_uuid = acme_feed.feed.uuid
    assert new_token and access.producer_for_token(new_token, feed_uuid) is not None
    assert access.producer_for_token(acme_feed.token, feed_uuid) is None
    assert new_token not in alice.get(page.request["PATH_INFO"]).content.decode()
    assert AuditEntry.objects.filter(actor=world.alice, action="producer.token_rotated").exists()


def test_revoke_disable_and_enable_from_the_admin(world, acme_feed, staff_client):
    alice = staff_client(world.alice)
    producer = acme_feed.producer
    act(alice, producer, "disable")
    producer.refresh_from_db()
    assert not producer.enabled
    act(alice, producer, "enable")
    producer.refresh_from_db()
    assert producer.enabled
    act(alice, producer, "revoke_token")
    producer.refresh_from_db()
    assert producer.token_hash is None
    assert access.producer_for_token(acme_feed.token, acme_feed.feed.uuid) is None
    actions = AuditEntry.objects.filter(actor=world.alice).order_by("id")
    assert list(actions.values_list("action", flat=True)) == [
        "producer.disabled",
        "producer.enabled",
        "producer.token_revoked",
    ]


def test_actions_need_a_post(world, acme_feed, staff_client):
    alice = staff_client(world.alice)
    url = reverse("admin:streams_producer_act", args=[acme_feed.producer.pk, "disable"])
    assert alice.get(url).status_code == 405
    acme_feed.producer.refresh_from_db()
    assert acme_feed.producer.enabled


def test_bulk_disable_from_the_list(world, acme_feed, staff_client):
    alice = staff_client(world.alice)
    alice.post(
        reverse("admin:streams_producer_changelist"),
        {"action": "disable", "_selected_action": [acme_feed.producer.pk]},
    )
    acme_feed.producer.refresh_from_db()
    assert not acme_feed.producer.enabled


def test_producer_list_shows_status_last_seen_and_samples_per_minute(
    world, acme_feed, staff_client
):
    Producer.objects.filter(pk=acme_feed.producer.pk).update(status="running")
    last_minute = int(time.time() // 60) - 1
    hub.sync_client().set(metrics.samples_key(str(acme_feed.feed.uuid), last_minute), 597)
    alice = staff_client(world.alice)
    page = alice.get(reverse("admin:streams_producer_changelist")).content.decode()
    assert '<td class="field-samples_per_minute">597</td>' in page
    assert '<td class="field-state">never ran</td>' not in page
    assert "running" in page and acme_feed.producer.token_prefix in page


def test_editing_a_producer_goes_through_the_service(world, acme_feed, staff_client):
    alice = staff_client(world.alice)
    change = reverse("admin:streams_producer_change", args=[acme_feed.producer.pk])
    response = alice.post(change, {"name": "coin flipper", "p": "0.5", "interval_ms": "100"})
    assert response.status_code == 302
    acme_feed.producer.refresh_from_db()
    assert acme_feed.producer.name == "coin flipper"
    assert acme_feed.producer.config == {"p": 0.5, "interval_ms": 100.0}
    entry = AuditEntry.objects.get(action="producer.changed")
    assert entry.details == {"fields": ["name", "config"]}


# -- feeds -------------------------------------------------------------------


def test_share_key_rotation_shows_the_link_once_and_revocation_clears_it(
    world, acme_feed, staff_client
):
    alice = staff_client(world.alice)
    feed = acme_feed.feed
    old_key = feed.share_key
    link = secret_on(act(alice, feed, "rotate_share_key"))
    feed.refresh_from_db()
    assert link == f"http://testserver/feeds/{feed.uuid}/?key={feed.share_key}"
    assert feed.share_key != old_key
    change = reverse("admin:streams_feed_change", args=[feed.pk])
    assert feed.share_key not in alice.get(change).content.decode()
    act(alice, feed, "revoke_share_key")
    feed.refresh_from_db()
    assert feed.share_key is None
    assert list(
        AuditEntry.objects.filter(actor=world.alice).order_by("id").values_list("action", flat=True)
    ) == ["feed.share_key_rotated", "feed.share_key_revoked"]


def test_creating_a_shared_feed_shows_its_link(world, staff_client):
    alice = staff_client(world.alice)
    response = alice.post(
        reverse("admin:streams_feed_add"),
        {"tenant": world.acme.pk, "name": "weather", "kind": "numeric", "share": "on"},
        follow=True,
    )
    feed = Feed.objects.get(name="weather")
    assert secret_on(response).endswith(f"?key={feed.share_key}")
    assert AuditEntry.objects.filter(action="feed.created", target_uuid=feed.uuid).exists()


def test_feed_settings_are_edited_through_the_service(world, acme_feed, staff_client):
    alice = staff_client(world.alice)
    change = reverse("admin:streams_feed_change", args=[acme_feed.feed.pk])
    response = alice.post(
        change,
        {
            "name": "coin",
            "allowed_origins": "https://example.org",
            "retention_count": "500",
            "retention_seconds": "",
        },
    )
    assert response.status_code == 302
    feed = Feed.objects.get(pk=acme_feed.feed.pk)
    assert feed.allowed_origins == "https://example.org" and feed.retention_count == 500
    entry = AuditEntry.objects.get(action="feed.changed")
    assert entry.details == {"fields": ["allowed_origins", "retention_count"]}


# -- no secret anywhere but on the one page ----------------------------------


def test_no_token_or_share_key_reaches_the_audit_log_or_the_logs(
    world, acme_feed, staff_client, caplog
):
    caplog.set_level(logging.DEBUG)
    alice = staff_client(world.alice)
    secrets = [acme_feed.token, acme_feed.feed.share_key]
    created = alice.post(
        reverse("admin:streams_producer_add"),
        {"feed": acme_feed.feed.pk, "kind": "external", "enabled": "on"},
        follow=True,
    )
    secrets.append(secret_on(created))
    secrets.append(secret_on(act(alice, acme_feed.producer, "rotate_token")))
    act(alice, acme_feed.producer, "revoke_token")
    secrets.append(secret_on(act(alice, acme_feed.feed, "rotate_share_key")).split("key=")[1])
    act(alice, acme_feed.feed, "revoke_share_key")
    assert all(secrets) and len(set(secrets)) == len(secrets)

    rows = [str(row) for row in AuditEntry.objects.values_list()]
    assert len(rows) >= 6
    for secret in secrets:
        assert not any(secret in row for row in rows)
        assert secret not in caplog.text


def test_the_console_still_works_while_redis_is_away(world, acme_feed, staff_client, monkeypatch):
    def away(*args, **kwargs):
        raise redis.ConnectionError("Redis is away")

    for module, name in [
        (presence, "watching"),
        (presence, "watching_count"),
        (metrics, "samples_last_full_minute"),
    ]:
        monkeypatch.setattr(module, name, away)
    alice = staff_client(world.alice)
    feed_page = alice.get(reverse("admin:streams_feed_change", args=[acme_feed.feed.pk]))
    assert "live presence (Redis) is unavailable" in feed_page.content.decode()
    feeds = alice.get(reverse("admin:streams_feed_changelist")).content.decode()
    assert '<td class="field-watching_count">?</td>' in feeds
    producers = alice.get(reverse("admin:streams_producer_changelist")).content.decode()
    assert '<td class="field-samples_per_minute">?</td>' in producers


def test_an_action_button_needs_the_csrf_token(world, acme_feed):
    world.alice.is_staff = True
    world.alice.save(update_fields=["is_staff"])
    forger = Client(enforce_csrf_checks=True)
    forger.force_login(world.alice)
    url = reverse("admin:streams_producer_act", args=[acme_feed.producer.pk, "disable"])
    refused = forger.post(url)
    assert refused.status_code == 403 and b"CSRF verification failed" in refused.content
    acme_feed.producer.refresh_from_db()
    assert acme_feed.producer.enabled
