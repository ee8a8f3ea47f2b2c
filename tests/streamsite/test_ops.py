"""/healthz and /metrics."""

import time

import pytest
from django.urls import reverse

from streamsite import hub, metrics

pytestmark = pytest.mark.django_db(transaction=True)


def test_healthz_reports_database_redis_and_the_live_path(client, settings):
    response = client.get(reverse("healthz"))
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"] == {"database": "ok", "redis": "ok", "hub": "ok"}
    live = body["live"]
    assert live["hub"] == {
        "groups": 0,
        "unconfirmed": 0,
        "reader": "idle",
        "connected": True,
        "last_heard_seconds": None,
    }
    assert live["publisher_backlog"] >= 0 and live["ingest_backlog"] == 0
    pool = live["redis_pool"]
    assert pool["max"] == settings.REDIS_POOL_SIZE
    assert 1 <= pool["open"] <= pool["max"] and pool["in_use"] <= pool["open"]


def test_healthz_names_redis_when_it_is_down(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
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


async def test_healthz_fails_when_the_hub_holds_groups_but_its_reader_is_gone(async_client):
    """The channel-layer round trip it used to make said ok with a dead hub reader."""
    from streamsite.runtime import Runtime
    from tests.streamsite.test_hub import Recorder, eventually

    hub_of_this_loop = Runtime.for_loop().hub  # the view runs on this test's loop
    subscriber = Recorder()
    await hub_of_this_loop.join("healthz-test", subscriber)
    try:
        healthy = await async_client.get(reverse("healthz"))
        assert healthy.status_code == 200 and healthy.json()["live"]["hub"]["groups"] == 1
        hub_of_this_loop._reader.cancel()  # as if the reader had died
        await eventually(lambda: hub_of_this_loop._reader.done())
        response = await async_client.get(reverse("healthz"))
        assert response.status_code == 503
        body = response.json()
        assert body["checks"]["hub"] == "failed: subscribed groups but no reader"
        assert body["checks"]["redis"] == "ok"
        assert "healthz-test" not in response.content.decode()  # no group names
    finally:
        await hub_of_this_loop.leave("healthz-test", subscriber)
