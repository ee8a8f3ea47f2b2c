"""HTTP side of documents: the list, the live page, uploads, the export, sharing.

Uploads answer JSON to scripts and to the page's XMLHttpRequest (which shows
upload progress), and redirect or re-render for a plain form post, so the
pages work without JavaScript too.
"""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator, Generator, Iterator

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.handlers.asgi import ASGIRequest
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_POST

from documents import access, events, selectors, services
from documents.forms import DocumentCreateForm, ShareForm, UploadForm
from documents.models import Document
from documents.parsing import ParserUnavailable
from documents.tsv import TSVError, export_lines
from streamsite import frames
from streamsite.http import AuthenticatedHttpRequest
from streamsite.slots import Lease
from tenants import quotas
from tenants.access import PUBLISH_ROLES, tenants_where
from tenants.views import not_found_or_sign_in

_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def _wants_json(request: HttpRequest) -> bool:
    return request.get_preferred_type(["text/html", "application/json"]) == "application/json"


def _error(code: frames.ErrorCode, message: str, status: int) -> JsonResponse:
    return JsonResponse(frames.error(code, message), status=status)


def _form_error(form: UploadForm) -> JsonResponse:
    errors = form.errors.as_data()
    file_errors = errors.get("file", [])
    if any(error.code == "too_large" for error in file_errors):
        return _error(frames.ErrorCode.TOO_LARGE, file_errors[0].messages[0], 413)
    first = next(iter(errors.values()))[0]
    return _error(frames.ErrorCode.BAD_REQUEST, first.messages[0], 400)


def _uploaded(upload: services.DocumentUpload) -> JsonResponse:
    document = upload.document
    frame = events.uploaded_frame(document, upload.warnings)
    frame["uuid"] = str(document.uuid)
    frame["url"] = document.get_absolute_url()
    return JsonResponse(frame)


@login_required
def document_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    """``/documents/``: the documents of my tenants, and a form to upload a new one."""
    uploadable = tenants_where(request.user, PUBLISH_ROLES)
    form = DocumentCreateForm(tenants=uploadable)
    status = 200
    if request.method == "POST":
        form = DocumentCreateForm(request.POST, request.FILES, tenants=uploadable)
        upload = None
        if form.is_valid():
            tenant = form.cleaned_data["tenant"]
            try:
                with quotas.upload_slot(tenant):
                    upload = services.document_create(
                        tenant=tenant,
                        name=form.cleaned_data["name"],
                        data=form.cleaned_data["file"].read(),
                        uploaded_by=request.user,
                    )
            except TSVError as exc:
                if _wants_json(request):
                    return JsonResponse(events.invalid_tsv_frame(exc), status=400)
                form.add_error("file", exc.message)
            except quotas.QuotaExceeded as exc:
                if _wants_json(request):
                    return JsonResponse(exc.frame(), status=exc.status)
                form.add_error(None, exc.message)
                status = exc.status
            except ParserUnavailable as exc:
                if _wants_json(request):
                    return _error(frames.ErrorCode.UNAVAILABLE, str(exc), 503)
                form.add_error("file", str(exc))
                status = 503
        elif _wants_json(request):
            return _form_error(form)
        if upload is not None:
            if _wants_json(request):
                return _uploaded(upload)
            messages.success(request, f"Uploaded {upload.document.name}.")
            return redirect(upload.document)
        status = status if status != 200 else 400
    documents = selectors.documents_for_user(request.user).order_by("tenant__slug", "name")
    return render(
        request,
        "documents/document_list.html",
        {"documents": documents, "form": form, "can_create": bool(uploadable)},
        status=status,
    )


def document_detail(request: HttpRequest, document_uuid) -> HttpResponse:
    """The live document page: members, or anyone with ``?key=<share key>``."""
    key = request.GET.get("key")
    found = access.document_access(request.user, document_uuid, key=key)
    if found is None:
        return not_found_or_sign_in(request, key=key, what="document")
    return _detail(request, found, key=key, upload_form=UploadForm())


def _detail(
    request: HttpRequest,
    found: access.DocumentAccess,
    *,
    key: str | None,
    upload_form: UploadForm,
) -> HttpResponse:
    """The page, from one access decision (``found``) and one read of the shared page."""
    document = found.document
    page = selectors.document_page_now(document)
    can_steer, can_upload, can_manage = found.can_steer, found.can_upload, found.may.manage
    share_url = None
    if can_manage and document.share_key:
        share_url = request.build_absolute_uri(
            f"{document.get_absolute_url()}?key={document.share_key}"
        )
    query = f"?key={key}" if key else ""
    first_row = (page["page_no"] - 1) * page["page_size"] + 1
    width = len(page["columns"])
    return render(
        request,
        "documents/document_detail.html",
        {
            "document": document,
            "page": page,
            "rows": [
                (first_row + offset, row, _filler_spans(width - len(row)))
                for offset, row in enumerate(page["data"])
            ],
            "query": query,
            "can_steer": can_steer,
            "can_upload": can_upload,
            "can_manage": can_manage,
            "share_url": share_url,
            "share_form": ShareForm(initial={"share": _share_mode(document)}),
            "upload_form": upload_form,
            "bootstrap": {
                "uuid": str(document.uuid),
                "key": key or "",
                "canSteer": can_steer,
                "page": page,
            },
        },
        status=400 if upload_form.errors else 200,
    )


# HTML caps colspan at 1,000.
_MAX_COLSPAN = 1000


def _filler_spans(missing: int) -> list[int]:
    """Colspans of the empty cells that complete a short row (rows are stored as given).

    One cell spans the missing columns, so a page costs the cells its rows
    have, not rows x columns; static/documents/document.js does the same.
    """
    return [min(_MAX_COLSPAN, missing - done) for done in range(0, max(missing, 0), _MAX_COLSPAN)]


@require_POST
def document_upload(request: HttpRequest, document_uuid) -> HttpResponse:
    """``POST /documents/<uuid>/upload/``: a new version from the multipart field ``file``."""
    key = request.GET.get("key")
    found = access.document_access(request.user, document_uuid, key=key)
    if found is None or not found.can_upload:
        if _wants_json(request):
            return _error(
                frames.ErrorCode.NOT_FOUND, "no such document, or you may not upload to it", 404
            )
        raise Http404("No such document.")
    document = found.document
    form = UploadForm(request.POST, request.FILES)
    if not form.is_valid():
        if _wants_json(request):
            return _form_error(form)
        return _detail(request, found, key=key, upload_form=form)
    try:
        data = form.cleaned_data["file"].read()
        with quotas.upload_slot(document.tenant):
            quotas.check_stored_bytes(document.tenant, adding=len(data), replacing_id=document.pk)
            upload = services.document_replace(
                document=document,
                data=data,
                uploaded_by=request.user if request.user.is_authenticated else None,
            )
    except TSVError as exc:
        if _wants_json(request):
            return JsonResponse(events.invalid_tsv_frame(exc), status=400)
        form.add_error("file", exc.message)
        return _detail(request, found, key=key, upload_form=form)
    except quotas.QuotaExceeded as exc:
        if _wants_json(request):
            return JsonResponse(exc.frame(), status=exc.status)
        form.add_error("file", exc.message)
        response = _detail(request, found, key=key, upload_form=form)
        response.status_code = exc.status
        return response
    except ParserUnavailable as exc:
        if _wants_json(request):
            return _error(frames.ErrorCode.UNAVAILABLE, str(exc), 503)
        form.add_error("file", str(exc))
        response = _detail(request, found, key=key, upload_form=form)
        response.status_code = 503
        return response
    if _wants_json(request):
        return _uploaded(upload)
    messages.success(request, f"Uploaded version {upload.document.version}.")
    return redirect(f"{document.get_absolute_url()}{'?key=' + key if key else ''}")


def document_export(request: HttpRequest, document_uuid) -> HttpResponseBase:
    """``/documents/<uuid>/export.tsv``: the current version as a TSV download, streamed.

    Cells starting with ``=``, ``+``, ``-`` or ``@`` get a leading ``'`` so a
    spreadsheet shows them as text instead of running them (documents.tsv).
    The rows are read a few chunks at a time and sent in pieces of about
    ``EXPORT_PIECE_BYTES`` as they are written, so an export holds a few
    chunks, not the document (selectors.document_export says which version
    a download gets when a new one is uploaded meanwhile).
    """
    key = request.GET.get("key")
    document = access.document_for_viewer(request.user, document_uuid, key=key)
    if document is None:
        return not_found_or_sign_in(request, key=key, what="document")
    try:
        lease = quotas.claim_slot(document.tenant, "concurrent_exports")
    except quotas.QuotaExceeded as exc:
        return JsonResponse(exc.frame(), status=exc.status)
    try:
        response = _export_response(request, document)
    except BaseException:
        lease.release_sync()
        raise
    return _released_when_sent(response, lease)


def _export_response(request: HttpRequest, document: Document) -> StreamingHttpResponse:
    document, rows = selectors.document_export(document.pk)
    pieces = _pieces(export_lines(document.columns, rows))
    response = StreamingHttpResponse(
        _async_pieces(pieces) if isinstance(request, ASGIRequest) else pieces,
        content_type="text/tab-separated-values; charset=utf-8",
    )
    # A name may hold line breaks, which a header must not.
    name = _CONTROL_CHARACTERS.sub(" ", document.name)
    response["Content-Disposition"] = content_disposition_header(
        True, f"{name} v{document.version}.tsv"
    )
    return response


# Bytes of TSV per piece of a streamed export: few enough sends to be cheap,
# small enough to hold.
EXPORT_PIECE_BYTES = 64 * 1024


def _pieces(lines: Iterator[str]) -> Generator[bytes, None, None]:
    batch: list[str] = []
    size = 0
    for line in lines:
        batch.append(line)
        size += len(line)
        if size >= EXPORT_PIECE_BYTES:
            yield "".join(batch).encode()
            batch, size = [], 0
    if batch:
        yield "".join(batch).encode()


async def _async_pieces(pieces: Generator[bytes, None, None]) -> AsyncIterator[bytes]:
    """The pieces for an ASGI server, each made on the request's own thread.

    Django would read a plain iterator to its end before sending anything
    (StreamingHttpResponse under ASGI). Here each piece is made by
    ``sync_to_async(thread_sensitive=True)``, which within a request runs on
    the thread the view ran on: the one whose database connection holds the
    export's cursor.
    """
    take = sync_to_async(functools.partial(next, pieces, None), thread_sensitive=True)
    try:
        while (piece := await take()) is not None:
            yield piece
    finally:
        # A client that went away: close the cursor (and its snapshot) now.
        await sync_to_async(pieces.close, thread_sensitive=True)()


def _released_when_sent(response: StreamingHttpResponse, lease: Lease) -> StreamingHttpResponse:
    """Hold the export slot until the body is sent: a streamed body is sent after the view returns."""
    if not response.streaming:
        lease.release_sync()
        return response
    if response.is_async:
        body = response.streaming_content

        async def releasing_async():
            try:
                async for part in body:
                    yield part
            finally:
                await lease.release()

        response.streaming_content = releasing_async()
    else:
        body = response.streaming_content

        def releasing():
            try:
                yield from body
            finally:
                lease.release_sync()

        response.streaming_content = releasing()
    return response


@require_POST
def document_share(request: HttpRequest, document_uuid) -> HttpResponse:
    """Owners: share by key (follow, or steer and upload), make a new key, or revoke it."""
    document = access.document_for_manager(request.user, document_uuid)
    if document is None:
        raise Http404("No such document.")
    form = ShareForm(request.POST)
    if form.is_valid():
        share = form.cleaned_data["share"]
        services.document_share_set(document=document, share=None if share == "off" else share)
        if form.cleaned_data["new_key"] and document.share_key:
            services.document_share_key_rotate(document=document)
        messages.success(request, "Sharing updated.")
    return redirect(document)


def _share_mode(document: Document) -> str:
    if not document.share_key:
        return "off"
    return "steer" if document.share_can_steer else "follow"
