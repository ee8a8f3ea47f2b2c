from django.urls import path

from streams.consumers import FeedPublishConsumer, FeedViewerConsumer

websocket_urlpatterns = [
    path("ws/feeds/<uuid:feed_uuid>/", FeedViewerConsumer.as_asgi()),
    path("ws/feeds/<uuid:feed_uuid>/publish/", FeedPublishConsumer.as_asgi()),
]
