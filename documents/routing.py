from django.urls import path

from documents.consumers import DocumentConsumer

websocket_urlpatterns = [
    path("ws/documents/<uuid:document_uuid>/", DocumentConsumer.as_asgi()),
]
