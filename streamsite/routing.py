from django.urls import re_path

from documents.routing import websocket_urlpatterns as document_routes
from streams.routing import websocket_urlpatterns as stream_routes
from streamsite.live import RefuseConsumer

websocket_urlpatterns = [
    *stream_routes,
    *document_routes,
    # Last: any other path is refused at the handshake instead of raising (a 500).
    re_path(r"", RefuseConsumer.as_asgi()),
]
