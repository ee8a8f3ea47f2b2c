"""Operations endpoints: health and metrics."""

from __future__ import annotations

import asyncio
import hmac

import redis
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect, JsonResponse
from django.templatetags.static import static

from streams.models import Feed
from streamsite import metrics

CHECK_TIMEOUT_SECONDS = 3.0


def _database_ok() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def _redis_round_trip() -> None:
    """A message through the channel layer and back: Redis reachable and working."""
    layer = get_channel_layer()
    channel = await layer.new_channel("healthz.")
    await layer.send(channel, {"type": "healthz.ping"})
    message = await layer.receive(channel)
    if message.get("type") != "healthz.ping":
        raise RuntimeError("the channel layer returned the wrong message")


async def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database and Redis both answer; 503 naming the part that failed."""
    checks: dict[str, str] = {}
    for name, check in (
        ("database", database_sync_to_async(_database_ok)),
        ("redis", _redis_round_trip),
    ):
        try:
            await asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS)
            checks[name] = "ok"
        except TimeoutError:
            checks[name] = f"no answer within {CHECK_TIMEOUT_SECONDS:.0f} s"
        except Exception as exc:
            checks[name] = f"failed: {exc.__class__.__name__}"
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks},
        status=200 if healthy else 503,
    )


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text; with METRICS_TOKEN set, only for ``Authorization: Bearer <it>``."""
    token = settings.METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    feeds = {str(u): n for u, n in Feed.objects.values_list("uuid", "name")}
    try:
        body = metrics.render(metrics.redis_client(), feeds)
    except redis.RedisError:
        return HttpResponse("redis unavailable\n", status=503, content_type="text/plain")
    return HttpResponse(body, content_type="text/plain; version=0.0.4")


def favicon(request: HttpRequest) -> HttpResponsePermanentRedirect:
    """Browsers ask for /favicon.ico on pages without a ``<link rel="icon">`` (the admin's).

    Resolved per request, not when the URLconf loads: in production the name is
    the collected, content-hashed one, and a missing manifest is then a system
    check (streamsite.E004) rather than a URLconf that cannot load.
    """
    return HttpResponsePermanentRedirect(static("favicon.svg"))
