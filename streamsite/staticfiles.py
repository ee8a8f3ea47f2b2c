"""Static files from the Daphne processes: WhiteNoise, as an async middleware.

WhiteNoise's own middleware is synchronous. Under Django's ASGI handler one
synchronous middleware makes every request hop to a worker thread and back,
and a streaming response (Server-Sent Events) would then be consumed in that
thread. This subclass keeps WhiteNoise's file table, headers and conditional
and compressed responses, and only changes how it is called: the look-up is a
dictionary read on the event loop (a stat per request in DEBUG, in a thread),
and a file is read in a thread, never on the loop.

In production (DEBUG off) the files come from ``STATIC_ROOT``, written by
``manage.py collectstatic`` with content-hashed, pre-compressed copies
(``CompressedManifestStaticFilesStorage``): hashed names are cached for a year.
In DEBUG they are found in ``static/`` and the apps at each request, so
``make run`` needs no collectstatic. ``SERVE_STATIC=0`` leaves them to a proxy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    sync_capable = False
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]]) -> None:
        # Django hands an async-only middleware an async get_response.
        assert iscoroutinefunction(get_response)
        super().__init__(get_response)
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if self.autorefresh:
            static_file = await sync_to_async(self.find_file, thread_sensitive=False)(
                request.path_info
            )
        else:
            static_file = self.files.get(request.path_info)
        if static_file is None:
            return await self.get_response(request)
        response = await sync_to_async(self.serve, thread_sensitive=False)(static_file, request)
        if response.streaming:
            # The file is small (the site's own assets): read it in a thread and
            # hand Django an async iterator, as its ASGIStaticFilesHandler does.
            chunks = await sync_to_async(_read, thread_sensitive=False)(response.streaming_content)
            response.streaming_content = _replay(chunks)
        return response


def _read(content: Iterable[bytes]) -> list[bytes]:
    return list(content)


async def _replay(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
