import asyncio
import json
import re
from collections.abc import AsyncIterator

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import render
from django.utils.http import content_disposition_header
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from streams import access, history, selectors, services
from streams.consumers import viewer_details
from streams.events import sample_frame, sample_frame_text
from streams.viewer import FeedViewer, parse_since
from streamsite import frames, slots
from streamsite.control import AccessWatch, Admission, Credential, user_now
from streamsite.frames import ErrorCode, encode, error_frame
from tenants import quotas
from tenants.access import tenants_of, tenants_where
from tenants.models import Role
from tenants.views import not_found_or_sign_in

RECENT_ON_PAGE = 200
SSE_KEEPALIVE_SECONDS = 15
# The history download reads this many samples per query, so memory stays
# bounded whatever the limit.
HISTORY_PAGE = 1_000
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
# The scope extension (streamsite.server) that says how much of the response is unsent.
PENDING_BYTES_EXTENSION = "streamsite.pending_bytes"


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    feeds = selectors.feeds_for_user(request.user).order_by("tenant__slug", "name")
    tenants = tenants_of(request.user)
    owned = {tenant.pk for tenant in tenants_where(request.user, frozenset({Role.OWNER}))}
    return render(
        request,
        "streams/dashboard.html",
        {
            "feeds": feeds,
            "tenants": tenants,
            # Owners run their tenant from the console (tenants/admin_site.py).
            "owned_tenants": [tenant for tenant in tenants if tenant.pk in owned],
        },
    )


def feed_detail(request: HttpRequest, feed_uuid) -> HttpResponse:
    """The live feed page: members, or anyone with ``?key=<share key>``."""
    key = request.GET.get("key")
    found = access.feed_access(request.user, feed_uuid, key=key)
    if found is None:
        return not_found_or_sign_in(request, key=key, what="feed")
    feed, can_manage = found.feed, found.may.manage
    recent = [
        sample_frame(feed.kind, s) for s in selectors.recent_samples(feed.pk, limit=RECENT_ON_PAGE)
    ]
    share_url = None
    if can_manage and feed.share_key:
        share_url = request.build_absolute_uri(f"{feed.get_absolute_url()}?key={feed.share_key}")
    return render(
        request,
        "streams/feed_detail.html",
        {
            "feed": feed,
            "key": key or "",
            "can_manage": can_manage,
            "share_url": share_url,
            "history_limit": history.HISTORY_MAX_LIMIT,
            "history_limit_text": f"{history.HISTORY_MAX_LIMIT:,}",
            "bootstrap": {
                "uuid": str(feed.uuid),
                "kind": feed.kind,
                "key": key or "",
                "recent": recent,
                "maxPoints": RECENT_ON_PAGE,
            },
        },
    )


@csrf_exempt  # POST is authorised by the producer token, not by a cookie
@require_http_methods(["GET", "POST"])
def feed_samples(request: HttpRequest, feed_uuid) -> HttpResponseBase:
    """``/api/feeds/<uuid>/samples/``: GET reads the feed's history, POST publishes."""
    if request.method == "GET":
        return sample_history(request, feed_uuid)
    return publish_samples(request, feed_uuid)


def sample_history(request: HttpRequest, feed_uuid) -> HttpResponseBase:
    """``GET /api/feeds/<uuid>/samples/?since=&limit=&format=csv|json``.

    Who may watch the feed (streams.access.feed_for_viewer) may download it:
    the samples after ``since`` in seq order, at most ``limit``, up to the
    newest one at the time of the request; streamed, one page of samples
    read at a time.
    """
    key = request.GET.get("key")
    feed = access.feed_for_viewer(request.user, feed_uuid, key=key)
    if feed is None:
        return JsonResponse(frames.error(ErrorCode.NOT_FOUND, "no such feed"), status=404)
    try:
        query = history.parse_history_query(request.GET)
    except history.BadHistoryQuery as exc:
        return JsonResponse(
            frames.error(ErrorCode.BAD_PARAM, exc.message, param=exc.param), status=400
        )
    rows = _history_rows(feed.pk, since=query.since, through=feed.last_seq, limit=query.limit)
    if query.format == "csv":
        response = StreamingHttpResponse(
            _history_csv(feed.kind, rows), content_type="text/csv; charset=utf-8"
        )
        name = _CONTROL_CHARACTERS.sub(" ", feed.name)
        response["Content-Disposition"] = content_disposition_header(True, f"{name} samples.csv")
    else:
        response = StreamingHttpResponse(
            _history_json(feed.kind, rows), content_type="application/json"
        )
    response["Cache-Control"] = "no-store"
    return response


async def _history_rows(
    feed_id: int, *, since: int, through: int, limit: int
) -> AsyncIterator[list[tuple[int, float, float, str]]]:
    """Pages of ``(seq, value, ts, stats_json)``, each read by its own query in a thread."""
    read = database_sync_to_async(selectors.sample_rows)
    after, left = since, limit
    while left > 0:
        page = await read(
            feed_id, after_seq=after, through_seq=through, limit=min(HISTORY_PAGE, left)
        )
        if not page:
            return
        yield page
        after, left = page[-1][0], left - len(page)


async def _history_csv(kind: str, pages: AsyncIterator) -> AsyncIterator[str]:
    yield history.csv_header(kind)
    async for page in pages:
        yield "".join(history.csv_row(kind, *row) for row in page)


async def _history_json(kind: str, pages: AsyncIterator) -> AsyncIterator[str]:
    """A JSON array of ``sample`` frames, as the viewer socket sends them."""
    separator = "["
    async for page in pages:
        yield separator + ",\n".join(sample_frame_text(kind, *row) for row in page)
        separator = ",\n"
    yield "[]\n" if separator == "[" else "]\n"


@csrf_exempt  # authorised by the producer token, not by a cookie
@require_POST
def publish_samples(request: HttpRequest, feed_uuid) -> JsonResponse:
    """``POST /api/feeds/<uuid>/samples/``: the publish socket's contract over HTTP."""
    authorization = request.headers.get("Authorization", "")
    token = authorization[7:].strip() if authorization.lower().startswith("bearer ") else None
    producer = access.producer_for_token(token, feed_uuid)
    if producer is None:
        return JsonResponse(
            frames.error(ErrorCode.FORBIDDEN, "missing, wrong or revoked token"), status=403
        )
    if len(request.body) > settings.PUBLISH_MAX_BYTES:
        return JsonResponse(frames.error(ErrorCode.TOO_LARGE, "the body is too large"), status=413)
    try:
        frame = services.publish_frame_parse(producer.feed.kind, json.loads(request.body))
    except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deep
        code = getattr(exc, "code", ErrorCode.BAD_JSON)
        message = getattr(exc, "message", "the body is not valid JSON")
        return JsonResponse(frames.error(code, message), status=400)
    if not quotas.take_samples_sync(producer.tenant, len(frame.inputs)):
        refusal = quotas.samples_refusal(producer.tenant)
        return JsonResponse(refusal.frame(), status=refusal.status)
    try:
        stored = services.samples_append(feed=producer.feed, values=frame.inputs, ids=frame.ids)
    except services.SampleRejected as exc:
        return JsonResponse(exc.frame(), status=exc.status)
    return JsonResponse(stored.ack(values_frame=frame.is_values))


async def feed_events(request: HttpRequest, feed_uuid) -> HttpResponseBase:
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
    session_key = request.session.session_key

    async def still_allowed() -> bool:
        now = await user_now(session_key, user)
        return (
            await database_sync_to_async(access.feed_for_viewer)(now, feed_uuid, key=key)
            is not None
        )

    async def revoked() -> None:
        end(f"data: {error_frame(ErrorCode.REVOKED, 'access was revoked')}\n\n")

    watch = AccessWatch(
        feed.tenant.uuid,
        Credential(str(feed.uuid), user_id=user.pk if user.is_authenticated else None),
        still_allowed=still_allowed,
        revoke=revoked,
    )
    # The same admission as a WebSocket's (AccessWatch.admit): joined, then checked again.
    admission = await watch.enter()
    if admission is not Admission.ADMITTED:
        await lease.release()
        if admission is Admission.REFUSED:
            raise Http404("No such feed.")
        # As a socket is accepted to be told why (1011): a 200 stream that says so
        # and ends, which an EventSource retries (it gives up for good on a 503).
        return StreamingHttpResponse(
            _unavailable_events(),
            content_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
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

    async def stream():
        nonlocal queued
        try:
            yield "retry: 2000\n\n"
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


async def _unavailable_events() -> AsyncIterator[str]:
    unavailable = error_frame(ErrorCode.UNAVAILABLE, "live events are unavailable; retry")
    yield f"retry: 2000\n\nevent: error\ndata: {unavailable}\n\n"


def _too_slow_event(budget: int) -> str:
    frame = frames.error(
        ErrorCode.TOO_SLOW, f"over {budget} bytes unread; reconnect (Last-Event-ID resumes)"
    )
    return f"event: error\ndata: {encode(frame)}\n\n"
