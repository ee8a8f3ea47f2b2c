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
from streamsite.control import AccessWatch, Credential, user_now
from streamsite.frames import error_frame
from tenants.access import tenants_of
from tenants.views import not_found_or_sign_in

RECENT_ON_PAGE = 200
# An SSE client this many frames behind is dropped; it resumes with Last-Event-ID.
SSE_MAX_BACKLOG = 10_000
SSE_KEEPALIVE_SECONDS = 15


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
    samples = services.samples_append(feed=producer.feed, values=inputs)
    return JsonResponse({"type": "ack", "seq": samples[-1].seq})


async def feed_events(request: HttpRequest, feed_uuid) -> StreamingHttpResponse:
    """``/feeds/<uuid>/events/``: the viewer stream as Server-Sent Events.

    Same frames as the WebSocket, one ``data:`` line each; samples carry
    ``id: <seq>`` so that EventSource resumes after a drop with Last-Event-ID.
    """
    key = request.GET.get("key")
    user = await request.auser()
    feed = await database_sync_to_async(access.feed_for_viewer)(user, feed_uuid, key=key)
    if feed is None:
        raise Http404("No such feed.")
    resume = request.headers.get("Last-Event-ID") or request.GET.get("since")
    since = parse_since(resume) if resume else None
    backlog: asyncio.Queue[str | None] = asyncio.Queue()

    async def send(text: str, seq: int | None) -> None:
        if backlog.qsize() >= SSE_MAX_BACKLOG:
            backlog.put_nowait(None)  # too far behind: end the stream
            return
        backlog.put_nowait(f"id: {seq}\ndata: {text}\n\n" if seq else f"data: {text}\n\n")

    async def failed() -> None:
        backlog.put_nowait(None)

    async def revoked() -> None:
        backlog.put_nowait(f"data: {error_frame('revoked', 'access was revoked')}\n\n")
        backlog.put_nowait(None)

    viewer = FeedViewer(feed, send, details=viewer_details(user, key), on_failure=failed)

    session_key = request.session.session_key

    async def still_allowed() -> bool:
        now = await user_now(session_key, user)
        return (
            await database_sync_to_async(access.feed_for_viewer)(now, feed_uuid, key=key)
            is not None
        )

    watch = AccessWatch(
        feed.tenant.uuid,
        Credential(str(feed.uuid), user_id=user.pk if user.is_authenticated else None),
        still_allowed=still_allowed,
        revoke=revoked,
    )

    async def stream():
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
                yield chunk
        finally:
            await watch.stop()
            await viewer.stop()

    return StreamingHttpResponse(
        stream(),
        content_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
