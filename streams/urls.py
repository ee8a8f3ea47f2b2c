from django.urls import path

from streams import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("feeds/<uuid:feed_uuid>/", views.feed_detail, name="feed-detail"),
    path("feeds/<uuid:feed_uuid>/events/", views.feed_events, name="feed-events"),
    path("api/feeds/<uuid:feed_uuid>/samples/", views.feed_samples, name="feed-publish"),
    # The same without the slash: APPEND_SLASH cannot redirect a POST (it answered 500).
    path("api/feeds/<uuid:feed_uuid>/samples", views.feed_samples),
]
