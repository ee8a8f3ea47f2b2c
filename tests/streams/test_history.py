"""``GET /api/feeds/<uuid>/samples/``: a feed's history as JSON or CSV, streamed and bounded."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import urllib.request
import uuid

import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient
from django.urls import reverse

from streams import history, views
from streams.events import sample_frame
from streams.models import Sample
from streams.services import samples_append
from tests.conftest import Daphne

append = database_sync_to_async(samples_append)

pytestmark = pytest.mark.django_db(transaction=True)


def history_url(feed, **params) -> str:
    query = "&".join(f"{name}={value}" for name, value in params.items())
    return reverse("feed-publish", args=[feed.uuid]) + (f"?{query}" if query else "")


async def download(client: AsyncClient, url: str) -> tuple[object, list[bytes]]:
    response = await client.get(url)
    if not response.streaming:
        return response, [response.content]
    return response, [chunk async for chunk in response.streaming_content]


async def signed_in(user) -> AsyncClient:
    client = AsyncClient()
    await client.aforce_login(user)
    return client


@pytest.fixture
def coin(acme_feed):
    """acme's binary feed with 25 samples."""
    samples_append(
        feed=acme_feed.feed, values=[(int(i % 3 != 0), 1_763_726_400.0 + i / 10) for i in range(25)]
    )
    acme_feed.feed.refresh_from_db()
    return acme_feed.feed


async def test_member_downloads_the_samples_as_the_sample_frames_of_the_viewer_socket(world, coin):
    response, chunks = await download(await signed_in(world.bob), history_url(coin))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    rows = json.loads(b"".join(chunks))
    stored = [sample_frame(coin.kind, s) async for s in Sample.objects.order_by("seq")]
    assert rows == stored and [row["seq"] for row in rows] == list(range(1, 26))
    assert rows[-1]["stats"]["alpha"] + rows[-1]["stats"]["beta"] == 25 + 4


async def test_csv_has_a_header_line_one_line_per_sample_and_downloads_as_a_file(world, coin):
    response, chunks = await download(await signed_in(world.bob), history_url(coin, format="csv"))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="coin samples.csv"'
    text = b"".join(chunks).decode()
    assert text.splitlines()[0] == (
        "seq,ts,value,n,successes,failures,alpha,beta,mean,ci95_lo,ci95_hi"
    )
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 25
    last = (await Sample.objects.aget(seq=25)).stats
    assert rows[-1]["seq"] == "25" and rows[-1]["value"] in ("0", "1")
    assert float(rows[-1]["ts"]) == pytest.approx(1_763_726_402.4)
    assert int(rows[-1]["alpha"]) == last["alpha"] and int(rows[-1]["beta"]) == last["beta"]
    assert [float(rows[-1]["ci95_lo"]), float(rows[-1]["ci95_hi"])] == last["ci95"]


async def test_numeric_feed_csv_carries_its_own_statistics(world, globex_feed):
    await append(feed=globex_feed.feed, values=[(0.5, 10.0), (-2.25, 11.0)])
    _, chunks = await download(
        await signed_in(world.charlie), history_url(globex_feed.feed, format="csv")
    )
    assert b"".join(chunks).decode().splitlines() == [
        "seq,ts,value,n,mean,variance,min,max",
        "1,10.0,0.5,1,0.5,0.0,0.5,0.5",
        "2,11.0,-2.25,2,-0.875,3.78125,-2.25,0.5",
    ]


async def test_share_key_opens_the_history_without_an_account(coin):
    response, chunks = await download(AsyncClient(), history_url(coin, key=coin.share_key))
    assert response.status_code == 200 and len(json.loads(b"".join(chunks))) == 25


async def test_stranger_or_wrong_key_gets_the_404_of_a_uuid_naming_nothing(
    world, coin, globex_feed
):
    nothing = type("Nothing", (), {"uuid": uuid.uuid4()})()
    expected, _ = await download(await signed_in(world.charlie), history_url(nothing))
    assert expected.status_code == 404
    for client, url in [
        (await signed_in(world.charlie), history_url(coin)),
        (await signed_in(world.charlie), history_url(coin, key=globex_feed.feed.share_key)),
        (AsyncClient(), history_url(coin, key="wrong")),
        (AsyncClient(), history_url(coin)),
    ]:
        response, chunks = await download(client, url)
        assert (response.status_code, b"".join(chunks)) == (404, expected.content)


async def test_since_and_limit_page_through_without_gap_or_overlap(world, coin):
    client, seen, since = await signed_in(world.bob), [], 0
    while True:
        _, chunks = await download(client, history_url(coin, since=since, limit=10))
        page = [row["seq"] for row in json.loads(b"".join(chunks))]
        if not page:
            break
        assert len(page) <= 10
        seen += page
        since = page[-1]
    assert seen == list(range(1, 26))


@pytest.mark.parametrize(
    "params,param",
    [
        ({"limit": "0"}, "limit"),
        ({"limit": str(history.HISTORY_MAX_LIMIT + 1)}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"since": "-1"}, "since"),
        ({"since": "1" * 20}, "since"),
        ({"since": "²"}, "since"),
        ({"format": "xml"}, "format"),
    ],
)
async def test_bad_parameters_get_a_400_naming_the_parameter(world, coin, params, param):
    response, _ = await download(await signed_in(world.bob), history_url(coin, **params))
    assert response.status_code == 400
    assert response.json() == {
        "type": "error",
        "error": "bad_param",
        "param": param,
        "message": response.json()["message"],
    }


async def test_the_largest_limit_is_accepted(world, coin):
    response, _ = await download(
        await signed_in(world.bob), history_url(coin, limit=history.HISTORY_MAX_LIMIT)
    )
    assert response.status_code == 200


async def test_without_a_limit_at_most_ten_thousand_samples_come(world, globex_feed):
    feed = globex_feed.feed
    await append(feed=feed, values=[(float(i), None) for i in range(10_005)])
    _, chunks = await download(await signed_in(world.charlie), history_url(feed, format="csv"))
    lines = b"".join(chunks).decode().splitlines()
    assert len(lines) == 1 + history.HISTORY_DEFAULT_LIMIT == 10_001
    assert lines[-1].startswith("10000,")


async def test_history_is_streamed_a_bounded_page_at_a_time(world, globex_feed):
    feed = globex_feed.feed
    await append(feed=feed, values=[(float(i), None) for i in range(2_500)])
    response, chunks = await download(
        await signed_in(world.charlie), history_url(feed, format="csv")
    )
    assert response.streaming
    rows_per_chunk = [chunk.count(b"\n") for chunk in chunks[1:]]  # the first is the header
    assert rows_per_chunk == [views.HISTORY_PAGE, views.HISTORY_PAGE, 500]


async def test_samples_published_after_the_request_began_are_not_in_it(world, globex_feed):
    # The download ends at the newest sample when it was asked for, so paging
    # on with since=<last seq> is how a client catches up.
    feed = globex_feed.feed
    await append(feed=feed, values=[(1.0, None)] * 3)
    client = await signed_in(world.charlie)
    response = await client.get(history_url(feed))
    await append(feed=feed, values=[(2.0, None)] * 3)
    rows = json.loads(b"".join([chunk async for chunk in response.streaming_content]))
    assert [row["seq"] for row in rows] == [1, 2, 3]


async def test_empty_feed_gives_an_empty_list_and_a_header_only_csv(world, acme_feed):
    client = await signed_in(world.bob)
    _, chunks = await download(client, history_url(acme_feed.feed))
    assert json.loads(b"".join(chunks)) == []
    _, chunks = await download(client, history_url(acme_feed.feed, format="csv"))
    assert b"".join(chunks).decode().count("\n") == 1


async def test_the_real_server_sends_the_download_in_chunks_without_a_length(world, globex_feed):
    # Daphne sends a streamed answer chunked; an answer read whole would carry Content-Length.
    feed = globex_feed.feed
    await append(feed=feed, values=[(float(i), None) for i in range(2_500)])
    server = Daphne().start()
    try:
        url = f"{server.http}{history_url(feed, format='csv', key=feed.share_key)}"
        response = await asyncio.to_thread(urllib.request.urlopen, url)
        with response:
            body = await asyncio.to_thread(response.read)
            assert response.headers["Transfer-Encoding"] == "chunked"
            assert "Content-Length" not in response.headers
        assert body.decode().count("\n") == 2_501
    finally:
        server.stop()


async def test_download_reads_the_database_as_it_goes(world, globex_feed):
    # Each page is read when the previous one has been sent: samples dropped
    # meanwhile (retention) are not sent, and nothing breaks.
    feed = globex_feed.feed
    await append(feed=feed, values=[(float(i), None) for i in range(2_500)])
    client = await signed_in(world.charlie)
    response = await client.get(history_url(feed, format="csv"))
    chunks = aiter(response.streaming_content)
    header, first_page = await anext(chunks), await anext(chunks)
    assert header.startswith(b"seq,") and first_page.count(b"\n") == views.HISTORY_PAGE
    await Sample.objects.filter(feed=feed, seq__gt=1_500).adelete()
    rest = b"".join([chunk async for chunk in chunks])
    assert rest.decode().splitlines()[-1].startswith("1500,")
