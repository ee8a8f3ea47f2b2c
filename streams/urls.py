from django.urls import path

from streams import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("feeds/<uuid:feed_uuid>/", views.feed_detail, name="feed-detail"),
    path("feeds/<uuid:feed_uuid>/events/", views.feed_events, name="feed-events"),
    path("api/feeds/<uuid:feed_uuid>/samples/", views.feed_samples, name="feed-publish"),
]
