"""Operations endpoints: health, metrics, the OpenAPI description; the CSRF refusal."""

from __future__ import annotations

import asyncio
import functools
import hmac
import json

import redis
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect, JsonResponse
from django.templatetags.static import static
from django.views import csrf

from streams.models import Feed
from streamsite import frames, hub, metrics
from streamsite.runtime import Runtime

CHECK_TIMEOUT_SECONDS = 3.0


def _database_ok() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database, Redis and the live path all work; 503 naming what failed.

    Cheap and safe to leave open: one query, one PING through the live path's
    own Redis pool, and counts that name no tenant, group or user.
    """
    runtime = Runtime.for_loop()
    checks: dict[str, str] = {}
    for name, check in (
        ("database", database_sync_to_async(_database_ok)),
        ("redis", runtime.ping),
    ):
        try:
            await asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS)
            checks[name] = "ok"
        except TimeoutError:
            checks[name] = f"no answer within {CHECK_TIMEOUT_SECONDS:.0f} s"
        except Exception as exc:
            checks[name] = f"failed: {exc.__class__.__name__}"
    problem = runtime.hub.problem()
    checks["hub"] = "ok" if problem is None else f"failed: {problem}"
    healthy = all(value == "ok" for value in checks.values())
    live = {
        "hub": runtime.hub.status(),
        "publisher_backlog": hub.publisher_backlog(),
        "ingest_backlog": runtime.ingest.backlog,
        "redis_pool": runtime.pool_status(),
    }
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks, "live": live},
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


@functools.cache
def _openapi_document() -> bytes:
    # Parsed once per process: a broken file fails the first request (and the tests), loudly.
    path = settings.BASE_DIR / "docs" / "openapi.json"
    return json.dumps(json.loads(path.read_text(encoding="utf-8"))).encode()


def openapi_view(request: HttpRequest) -> HttpResponse:
    """``/api/openapi.json``: docs/openapi.json, the HTTP API's OpenAPI 3.1 description."""
    return HttpResponse(_openapi_document(), content_type="application/json")


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: the JSON error shape for a client that prefers JSON, else Django's page."""
    if request.get_preferred_type(["text/html", "application/json"]) == "application/json":
        return JsonResponse(
            frames.error(frames.ErrorCode.FORBIDDEN, f"CSRF check failed: {reason}"), status=403
        )
    return csrf.csrf_failure(request, reason=reason)


def favicon(request: HttpRequest) -> HttpResponsePermanentRedirect:
    """Browsers ask for /favicon.ico on pages without a ``<link rel="icon">`` (the admin's).

    Resolved per request, not when the URLconf loads: in production the name is
    the collected, content-hashed one, and a missing manifest is then a system
    check (streamsite.E004) rather than a URLconf that cannot load.
    """
    return HttpResponsePermanentRedirect(static("favicon.svg"))
