from typing import Any

from django.urls import URLPattern, re_path

from documents.routing import websocket_urlpatterns as document_routes
from streams.routing import websocket_urlpatterns as stream_routes
from streamsite.live import RefuseConsumer

websocket_urlpatterns = [
    *stream_routes,
    *document_routes,
    # Last: any other path is refused at the handshake instead of raising (a 500).
    re_path(r"", RefuseConsumer.as_asgi()),
]


class WebSocketRouter:
    """Channels' URLRouter for flat ``path()`` routes, without copying the scope.

    URLRouter copies the scope to add ``url_route``; Daphne's scope is fresh per
    connection, so it is set in place: one scope copy fewer per idle viewer.
    """

    def __init__(self, routes: list[URLPattern]) -> None:
        self.routes = routes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        path = scope["path"].removeprefix(scope.get("root_path", "")).lstrip("/")
        for route in self.routes:
            match = route.pattern.match(path)
            if match is not None:
                _, args, kwargs = match
                scope["url_route"] = {"args": args, "kwargs": kwargs}
                return await route.callback(scope, receive, send)
        raise ValueError(f"No route found for path {path!r}.")  # the catch-all refuses first
