import asyncio
import json

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from streams import access, selectors, services
from streams.consumers import viewer_details
from streams.events import sample_frame
from streams.viewer import FeedViewer, parse_since
from streamsite import slots
from streamsite.control import AccessWatch, Credential
from streamsite.frames import encode
from tenants import quotas
from tenants.access import tenants_of
from tenants.views import not_found_or_sign_in

RECENT_ON_PAGE = 200
SSE_KEEPALIVE_SECONDS = 15
# The scope extension (streamsite.server) that says how much of the response is unsent.
PENDING_BYTES_EXTENSION = "streamsite.pending_bytes"


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    feeds = selectors.feeds_for_user(request.user).order_by("tenant__slug", "name")
    return render(
        request, "streams/dashboard.html", {"feeds": feeds, "tenants": tenants_of(request.user)}
    )


def feed_detail(request: HttpRequest, feed_uuid) -> HttpResponse:
    """The live feed page: members, or anyone with ``?key=<share key>``."""
    key = request.GET.get("key")
    feed = access.feed_for_viewer(request.user, feed_uuid, key=key)
    if feed is None:
        return not_found_or_sign_in(request, key=key, what="feed")
    recent = [
        sample_frame(feed.kind, s) for s in selectors.recent_samples(feed.pk, limit=RECENT_ON_PAGE)
    ]
    return render(
        request,
        "streams/feed_detail.html",
        {
            "feed": feed,
            "key": key or "",
            "bootstrap": {
                "uuid": str(feed.uuid),
                "kind": feed.kind,
                "key": key or "",
                "recent": recent,
                "maxPoints": RECENT_ON_PAGE,
            },
        },
    )


@csrf_exempt  # authorised by the producer token, not by a cookie
@require_POST
def publish_samples(request: HttpRequest, feed_uuid) -> JsonResponse:
    """``POST /api/feeds/<uuid>/samples/``: the publish socket's contract over HTTP."""
    authorization = request.headers.get("Authorization", "")
    token = authorization[7:].strip() if authorization.lower().startswith("bearer ") else None
    producer = access.producer_for_token(token, feed_uuid)
    if producer is None:
        return JsonResponse(
            {"type": "error", "error": "forbidden", "message": "missing, wrong or revoked token"},
            status=403,
        )
    if len(request.body) > settings.PUBLISH_MAX_BYTES:
        return JsonResponse(
            {"type": "error", "error": "too_large", "message": "the body is too large"},
            status=413,
        )
    try:
        frame = json.loads(request.body)
        inputs = services.sample_inputs_from_frame(producer.feed.kind, frame)
    except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deep
        code = getattr(exc, "code", "bad_json")
        message = getattr(exc, "message", "the body is not valid JSON")
        return JsonResponse({"type": "error", "error": code, "message": message}, status=400)
    if not quotas.take_samples_sync(producer.tenant, len(inputs)):
        refusal = quotas.samples_refusal(producer.tenant)
        return JsonResponse(refusal.frame(), status=refusal.status)
    samples = services.samples_append(feed=producer.feed, values=inputs)
    return JsonResponse({"type": "ack", "seq": samples[-1].seq})


async def feed_events(request: HttpRequest, feed_uuid) -> StreamingHttpResponse:
    """``/feeds/<uuid>/events/``: the viewer stream as Server-Sent Events.

    Same frames as the WebSocket, one ``data:`` line each; samples carry
    ``id: <seq>`` so that EventSource resumes after a drop with Last-Event-ID.
    Counts against the same connection caps as a WebSocket (HTTP 429 over one).
    A reader more than WEBSOCKET_MAX_PENDING_BYTES behind (queued here plus
    unsent by the server) gets an ``error`` event (``too_slow``) and the end of
    the stream; it resumes with Last-Event-ID.
    """
    key = request.GET.get("key")
    user = await request.auser()
    feed = await database_sync_to_async(access.feed_for_viewer)(user, feed_uuid, key=key)
    if feed is None:
        raise Http404("No such feed.")
    try:
        lease = await slots.claim(
            slots.connection_claims(user=user, key=key, address=request.META.get("REMOTE_ADDR"))
        )
    except slots.Refused as refused:
        return JsonResponse(slots.too_many_connections(refused), status=429)
    resume = request.headers.get("Last-Event-ID") or request.GET.get("since")
    since = parse_since(resume) if resume else None
    backlog: asyncio.Queue[str | None] = asyncio.Queue()
    budget = settings.WEBSOCKET_MAX_PENDING_BYTES
    extensions = getattr(request, "scope", {}).get("extensions") or {}
    unsent = extensions.get(PENDING_BYTES_EXTENSION) or (lambda: 0)
    queued = 0  # bytes in backlog
    ended = False

    def end(chunk: str | None = None) -> None:
        nonlocal ended
        if not ended:
            ended = True
            if chunk is not None:
                backlog.put_nowait(chunk)
            backlog.put_nowait(None)

    async def send(text: str, seq: int | None) -> None:
        nonlocal queued
        if ended:
            return
        chunk = f"id: {seq}\ndata: {text}\n\n" if seq else f"data: {text}\n\n"
        if queued + unsent() + len(chunk) > budget:
            end(_too_slow_event(budget))  # too far behind: it resumes with Last-Event-ID
            return
        queued += len(chunk)
        backlog.put_nowait(chunk)

    async def failed() -> None:
        end()

    viewer = FeedViewer(feed, send, details=viewer_details(user, key), on_failure=failed)

    async def still_allowed() -> bool:
        return (
            await database_sync_to_async(access.feed_for_viewer)(user, feed_uuid, key=key)
            is not None
        )

    watch = AccessWatch(
        feed.tenant.uuid,
        Credential(str(feed.uuid), user_id=user.pk if user.is_authenticated else None),
        still_allowed=still_allowed,
        revoke=failed,
    )

    async def stream():
        nonlocal queued
        try:
            yield "retry: 2000\n\n"
            await watch.start()
            await viewer.start(since)
            while True:
                try:
                    chunk = await asyncio.wait_for(backlog.get(), SSE_KEEPALIVE_SECONDS)
                except TimeoutError:
                    chunk = ": keep-alive\n\n"
                if chunk is None:
                    return
                queued = max(0, queued - len(chunk))
                yield chunk
        finally:
            await watch.stop()
            await viewer.stop()
            await lease.release()

    return StreamingHttpResponse(
        stream(),
        content_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _too_slow_event(budget: int) -> str:
    frame = {
        "type": "error",
        "error": "too_slow",
        "message": f"over {budget} bytes unread; reconnect (Last-Event-ID resumes)",
    }
    return f"event: error\ndata: {encode(frame)}\n\n"
