"""streamsite/staticfiles.py: WhiteNoise on the ASGI path, from the collected STATIC_ROOT."""

from __future__ import annotations

import gzip
import re

import pytest
from django.templatetags.static import static


async def body(response) -> bytes:
    return b"".join([chunk async for chunk in response.streaming_content])


@pytest.fixture
def feed_js() -> str:
    return static("streams/feed.js")


def test_pages_name_content_hashed_files(feed_js):
    assert re.fullmatch(r"/static/streams/feed\.[0-9a-f]{12}\.js", feed_js)


async def test_a_hashed_file_is_cached_for_good(async_client, feed_js, settings):
    response = await async_client.get(feed_js)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    assert "immutable" in response["Cache-Control"]
    source = (settings.BASE_DIR / "static" / "streams" / "feed.js").read_bytes()
    assert await body(response) == source


async def test_a_browser_that_accepts_gzip_gets_the_precompressed_copy(async_client, feed_js):
    response = await async_client.get(feed_js, headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200 and response["Content-Encoding"] == "gzip"
    assert b"function" in gzip.decompress(await body(response))


async def test_an_unhashed_name_is_served_but_revalidated(async_client):
    response = await async_client.get("/static/streams/feed.js")
    assert response.status_code == 200 and "immutable" not in response["Cache-Control"]
    etag = response["ETag"]
    again = await async_client.get("/static/streams/feed.js", headers={"If-None-Match": etag})
    assert again.status_code == 304


async def test_an_unknown_static_path_falls_through_to_django(async_client):
    response = await async_client.get("/static/streams/missing.js")
    assert response.status_code == 404
