"""/healthz and /metrics."""

import time

import pytest
from django.urls import reverse

from streamsite import hub, metrics

pytestmark = pytest.mark.django_db(transaction=True)


def test_healthz_reports_database_and_redis_ok(client):
    response = client.get(reverse("healthz"))
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


def test_healthz_names_redis_when_it_is_down(client, settings):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": "redis://127.0.0.1:1/0"}]},
        }
    }
    response = client.get(reverse("healthz"))
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["database"] == "ok" and body["checks"]["redis"] != "ok"


def test_metrics_sum_process_totals_and_show_feed_rates(client, acme_feed):
    metrics.inc("connections_open", 3, kind="feed_viewer")
    metrics.flush()
    last_minute = int(time.time() // 60) - 1
    hub.sync_client().set(metrics.samples_key(str(acme_feed.feed.uuid), last_minute), 600)
    body = client.get(reverse("metrics")).content.decode()
    assert "# TYPE streamsite_connections_open gauge" in body
    prefix = 'streamsite_connections_open{kind="feed_viewer"} '
    line = next(x for x in body.splitlines() if x.startswith(prefix))
    assert int(line.split()[-1]) >= 3
    assert (
        f'streamsite_feed_samples_per_second{{feed="{acme_feed.feed.uuid}",name="coin"}} 10.000'
        in body
    )
    metrics.inc("connections_open", -3, kind="feed_viewer")
    metrics.flush()


def test_metrics_require_the_token_when_one_is_set(client, settings):
    settings.METRICS_TOKEN = "s3cret"
    assert client.get(reverse("metrics")).status_code == 403
    ok = client.get(reverse("metrics"), headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
