import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from streams.models import Sample
from tests.streams.wedged import wedge_with_1e308


@pytest.fixture
def client_of(client):
    def sign_in(user):
        client.force_login(user)
        return client

    return sign_in


def test_dashboard_needs_sign_in(client, world):
    response = client.get(reverse("dashboard"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_dashboard_lists_only_the_feeds_of_my_tenants(client_of, world, acme_feed, globex_feed):
    page = client_of(world.bob).get(reverse("dashboard")).content.decode()
    assert "coin" in page and "secret" not in page


def test_member_sees_the_feed_page(client_of, world, acme_feed):
    response = client_of(world.bob).get(acme_feed.feed.get_absolute_url())
    assert response.status_code == 200
    assert str(acme_feed.feed.uuid) in response.content.decode()


def test_stranger_gets_404_for_another_tenants_feed(client_of, world, acme_feed):
    assert client_of(world.charlie).get(acme_feed.feed.get_absolute_url()).status_code == 404


def test_share_key_opens_the_feed_page_without_an_account(client, acme_feed):
    url = f"{acme_feed.feed.get_absolute_url()}?key={acme_feed.feed.share_key}"
    assert client.get(url).status_code == 200
    assert client.get(f"{acme_feed.feed.get_absolute_url()}?key=wrong").status_code == 404


def test_sign_in_page_signs_in_with_csrf(world):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    page = browser.get(reverse("login"))
    token = page.cookies["csrftoken"].value
    response = browser.post(
        reverse("login"),
        {
            "username": "bob",
            "password": "correct-horse-battery-staple",
            "csrfmiddlewaretoken": token,
        },
    )
    assert response.status_code == 302
    refused = Client(enforce_csrf_checks=True).post(
        reverse("login"), {"username": "bob", "password": "correct-horse-battery-staple"}
    )
    assert refused.status_code == 403


def publish(client, feed, body, token):
    return client.post(
        reverse("feed-publish", args=[feed.uuid]),
        data=body if isinstance(body, str) else json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"} if token else {},
    )


def test_http_publish_acks_the_seq(client, acme_feed):
    response = publish(client, acme_feed.feed, {"values": [1, 0]}, acme_feed.token)
    assert response.status_code == 200 and response.json() == {"type": "ack", "seq": 2}


@pytest.mark.parametrize("body,code", [("{oops", "bad_json"), ({"value": 3}, "bad_value")])
def test_http_publish_rejects_bad_bodies_and_stores_nothing(client, acme_feed, body, code):
    response = publish(client, acme_feed.feed, body, acme_feed.token)
    assert response.status_code == 400 and response.json()["error"] == code
    assert not Sample.objects.exists()


def test_http_publish_refuses_a_wrong_token(client, acme_feed, globex_feed):
    for token in [None, "sst_nope", globex_feed.token]:
        assert publish(client, acme_feed.feed, {"value": 1}, token).status_code == 403
    assert not Sample.objects.exists()


def test_http_publish_without_the_trailing_slash_is_the_same_api(client, acme_feed):
    url = reverse("feed-publish", args=[acme_feed.feed.uuid]).rstrip("/")
    response = client.post(
        url,
        data=json.dumps({"value": 1}),
        content_type="application/json",
        headers={"authorization": f"Bearer {acme_feed.token}"},
    )
    assert response.status_code == 200 and response.json()["seq"] == 1


def test_dashboard_offers_owners_to_create_feeds_and_documents(client_of, world):
    owner = client_of(world.alice).get(reverse("dashboard")).content.decode()
    assert f"{reverse('admin:streams_feed_add')}?tenant={world.acme.pk}" in owner
    assert f"{reverse('document-list')}#upload" in owner


def test_dashboard_offers_viewers_no_console(client_of, world):
    viewer = client_of(world.bob).get(reverse("dashboard")).content.decode()
    assert reverse("admin:streams_feed_add") not in viewer


def test_http_publish_of_an_out_of_range_value_is_a_400_naming_the_range(client, globex_feed):
    for body in [{"values": [1e200, -1e200]}, {"value": 1e308}]:
        response = publish(client, globex_feed.feed, body, globex_feed.token)
        assert response.status_code == 400
        assert response.json()["error"] == "bad_value" and "1e100" in response.json()["message"]
    assert not Sample.objects.exists()


def test_a_feed_wedged_before_the_fix_answers_400_not_500_until_recomputestats_heals_it(
    client, globex_feed
):
    feed = globex_feed.feed
    wedge_with_1e308(feed)
    for _ in range(2):  # "on every try"
        response = publish(client, feed, {"value": 1}, globex_feed.token)
        assert response.status_code == 400
        assert response.json()["error"] == "bad_value"
        assert "recomputestats" in response.json()["message"]
    call_command("recomputestats", str(feed.uuid), stdout=StringIO())
    response = publish(client, feed, {"value": 1}, globex_feed.token)
    assert response.status_code == 200 and response.json() == {"type": "ack", "seq": 2}
    # The 1e308 the old code took stays stored but is left out of the statistics.
    latest = Sample.objects.get(feed=feed, seq=2)
    assert latest.stats == {"n": 1, "mean": 1.0, "variance": 0.0, "min": 1.0, "max": 1.0}
