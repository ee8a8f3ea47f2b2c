"""The document socket /ws/documents/<uuid>/, through the real ASGI app and real Redis."""

import asyncio
import json
import random
from unittest import mock

import pytest
from channels.db import database_sync_to_async

from documents import events, services
from documents.models import Document
from documents.selectors import document_current_page
from streamsite import hub
from streamsite.frames import encode
from tests.conftest import session_cookie_for
from tests.documents.conftest import CORPUS, numbers_tsv
from tests.streams.wsclient import communicator, drain, quiet, receive, refused

pytestmark = pytest.mark.django_db(transaction=True)

cookie_for = database_sync_to_async(session_cookie_for)
current_page = database_sync_to_async(document_current_page)
page_set = database_sync_to_async(services.document_page_set)
share_set = database_sync_to_async(services.document_share_set)


def path_of(document, key=None):
    return f"/ws/documents/{document.uuid}/" + (f"?key={key}" if key else "")


async def open_as(user, document):
    comm = communicator(path_of(document), cookie=await cookie_for(user))
    connected, _ = await comm.connect()
    assert connected
    return comm, await receive(comm)


async def open_with_key(document, key):
    comm = communicator(path_of(document, key), origin=None)
    connected, _ = await comm.connect()
    assert connected
    return comm, await receive(comm)


async def send(comm, frame):
    await comm.send_to(text_data=frame if isinstance(frame, str) else json.dumps(frame))


async def close_all(*comms):
    for comm in comms:
        await comm.disconnect()


async def test_member_gets_the_current_shared_page_on_connect(acme_document, world):
    await page_set(document=acme_document, page_no=2)
    comm, page = await open_as(world.bob, acme_document)
    assert page == {
        "type": "page",
        "page_no": 2,
        "page_size": 100,
        "total_number": 250,
        "total_pages": 3,
        "columns": ["n", "square", "tag"],
        "data": [[str(i), str(i * i), "v1"] for i in range(101, 201)],
        "version": 1,
        "state": 2,
    }
    await comm.disconnect()


async def test_a_steer_moves_every_viewer(acme_document, world):
    alice, _ = await open_as(world.alice, acme_document)
    bob, _ = await open_as(world.bob, acme_document)
    guest, _ = await open_with_key(acme_document, acme_document.share_key)
    await send(alice, {"type": "page", "page_no": 3})
    frames = [await receive(c) for c in (alice, bob, guest)]
    assert {(f["page_no"], f["state"]) for f in frames} == {(3, 2)}
    assert frames[1]["data"][0] == ["201", "40401", "v1"]
    assert (await current_page(acme_document.pk))["page_no"] == 3
    assert await quiet(alice, 0.2)
    await close_all(alice, bob, guest)


async def test_a_followers_steer_is_refused_and_nothing_moves(acme_document, world):
    alice, _ = await open_as(world.alice, acme_document)
    bob, _ = await open_as(world.bob, acme_document)
    guest, _ = await open_with_key(acme_document, acme_document.share_key)
    for follower in (bob, guest):
        await send(follower, {"type": "page", "page_no": 2})
        assert (await receive(follower))["error"] == "forbidden"
    assert await quiet(alice, 0.3)
    assert (await current_page(acme_document.pk))["page_no"] == 1
    await close_all(alice, bob, guest)


async def test_a_key_that_allows_steering_steers(acme_document, world):
    await share_set(document=acme_document, share="steer")
    bob, _ = await open_as(world.bob, acme_document)
    guest, _ = await open_with_key(acme_document, acme_document.share_key)
    await send(guest, {"type": "page", "page_no": 2})
    assert (await receive(bob))["page_no"] == 2
    assert (await receive(guest))["page_no"] == 2
    await close_all(bob, guest)


@pytest.mark.parametrize(
    "frame,code",
    [
        ("{nope", "bad_json"),
        ("[1, 2]", "bad_frame"),
        ({"type": "turn", "page_no": 2}, "bad_frame"),
        ({"type": "page"}, "bad_frame"),
        ({"type": "page", "page_no": "2"}, "bad_frame"),
        ({"type": "page", "page_no": 2.5}, "bad_frame"),
        ({"type": "page", "page_no": True}, "bad_frame"),
        ({"type": "page", "page_no": 0}, "out_of_range"),
        ({"type": "page", "page_no": 4}, "out_of_range"),
        ({"type": "page", "page_no": 10**30}, "out_of_range"),
        ("x" * 5000, "too_large"),
    ],
)
async def test_a_bad_request_gets_an_error_and_the_socket_keeps_serving(
    acme_document, world, frame, code
):
    alice, _ = await open_as(world.alice, acme_document)
    bob, _ = await open_as(world.bob, acme_document)
    await send(alice, frame)
    error = await receive(alice)
    assert (error["type"], error["error"]) == ("error", code) and error["message"]
    assert await quiet(bob, 0.2)
    await send(alice, {"type": "page", "page_no": 2})
    assert (await receive(alice))["page_no"] == 2
    assert (await receive(bob))["page_no"] == 2
    await close_all(alice, bob)


async def test_a_binary_upload_puts_every_viewer_on_page_one_of_the_new_version(
    acme_document, world
):
    alice, _ = await open_as(world.alice, acme_document)
    await send(alice, {"type": "page", "page_no": 3})
    await receive(alice)
    bob, _ = await open_as(world.bob, acme_document)
    guest, _ = await open_with_key(acme_document, acme_document.share_key)
    await alice.send_to(bytes_data=b"city\tpeople\nOslo\t700000\nBergen\n")
    for viewer in (alice, bob, guest):
        page = await receive(viewer)
        assert (page["version"], page["page_no"], page["total_number"]) == (2, 1, 2)
        assert page["columns"] == ["city", "people"]
        # Ragged rows travel as given: the page pads them (docs/PROTOCOL.md).
        assert page["data"] == [["Oslo", "700000"], ["Bergen"]]
    uploaded = await receive(alice)
    assert uploaded == {
        "type": "uploaded",
        "version": 2,
        "row_count": 2,
        "warnings": ["Line 3 had 1 of 2 fields; padded."],
    }
    await close_all(alice, bob, guest)


@pytest.mark.parametrize(
    "name,reason,line",
    [
        ("unmatched_quote_line4.tsv", "unmatched_quote", 4),
        ("png_image.tsv", "binary", None),
        ("latin1_line3.tsv", "encoding", 3),
        ("empty.tsv", "empty", None),
    ],
)
async def test_a_bad_binary_upload_is_refused_and_nobody_hears_of_it(
    acme_document, world, name, reason, line
):
    alice, _ = await open_as(world.alice, acme_document)
    bob, _ = await open_as(world.bob, acme_document)
    # send_input, not send_to: the test client refuses to send an empty frame.
    data = (CORPUS / "bad" / name).read_bytes()
    await alice.send_input({"type": "websocket.receive", "bytes": data})
    error = await receive(alice)
    assert (error["error"], error["reason"], error["line"]) == ("invalid_tsv", reason, line)
    if line is not None:
        assert error["message"].startswith(f"Line {line}: ")
    assert await quiet(bob, 0.3)
    assert (await current_page(acme_document.pk))["version"] == 1
    await close_all(alice, bob)


async def test_a_follower_cannot_upload(acme_document, world):
    bob, _ = await open_as(world.bob, acme_document)
    guest, _ = await open_with_key(acme_document, acme_document.share_key)
    for follower in (bob, guest):
        await follower.send_to(bytes_data=numbers_tsv(3))
        assert (await receive(follower))["error"] == "forbidden"
    assert (await current_page(acme_document.pk))["version"] == 1
    await close_all(bob, guest)


async def test_an_upload_over_the_size_limit_is_refused(acme_document, world, settings):
    settings.DOCUMENT_MAX_BYTES = 1000
    alice, _ = await open_as(world.alice, acme_document)
    await alice.send_to(bytes_data=numbers_tsv(200))
    assert (await receive(alice))["error"] == "too_large"
    assert (await current_page(acme_document.pk))["version"] == 1
    await alice.disconnect()


async def test_stranger_is_refused_even_with_the_exact_uuid(acme_document, world):
    comm = communicator(path_of(acme_document), cookie=await cookie_for(world.charlie))
    assert await refused(comm)


async def test_anonymous_without_key_and_wrong_keys_are_refused(acme_document, globex_document):
    assert await refused(communicator(path_of(acme_document)))
    assert await refused(communicator(path_of(acme_document, "guess")))
    assert await refused(communicator(path_of(acme_document, globex_document.share_key)))
    assert await refused(communicator(path_of(acme_document, str(acme_document.uuid))))
    assert await refused(communicator("/ws/documents/00000000-0000-0000-0000-000000000000/"))


@pytest.mark.parametrize("origin", [b"http://evil.example", b"null", None])
async def test_session_does_not_authorise_a_foreign_or_missing_origin(acme_document, world, origin):
    comm = communicator(path_of(acme_document), cookie=await cookie_for(world.alice), origin=origin)
    assert await refused(comm)


async def test_foreign_page_may_use_the_key_only_from_an_allowed_origin(acme_document):
    path = path_of(acme_document, acme_document.share_key)
    assert await refused(communicator(path, origin=b"https://partner.example"))
    acme_document.allowed_origins = "https://partner.example"
    await database_sync_to_async(acme_document.save)()
    comm = communicator(path, origin=b"https://partner.example")
    connected, _ = await comm.connect()
    assert connected and (await receive(comm))["type"] == "page"
    await comm.disconnect()


async def test_an_older_state_arriving_late_is_dropped(acme_document, world):
    """Broadcasts of two changes can cross; a viewer never goes back to the older one."""
    bob, first = await open_as(world.bob, acme_document)
    old = await database_sync_to_async(services.document_page_set)(
        document=acme_document, page_no=2
    )
    assert (await receive(bob))["state"] == old["state"]
    await page_set(document=acme_document, page_no=3)
    assert (await receive(bob))["page_no"] == 3
    # The frame of the older change arrives again, late.
    await database_sync_to_async(hub.publish)(
        events.document_group(acme_document.uuid), [(old["state"], encode(old))]
    )
    assert await quiet(bob, 0.3)
    await bob.disconnect()


async def test_a_lost_broadcast_is_made_good_by_the_next_change(acme_document, world):
    bob, _ = await open_as(world.bob, acme_document)
    with mock.patch("streamsite.hub.publish"):
        await page_set(document=acme_document, page_no=2)
    await page_set(document=acme_document, page_no=3)
    page = await receive(bob)
    assert (page["page_no"], page["state"]) == (3, 3)
    await bob.disconnect()


async def test_concurrent_steers_and_uploads_leave_every_viewer_on_the_databases_page(
    acme_document, world
):
    """Three steerers fire page turns and uploads at once; five viewers must agree with the DB."""
    await share_set(document=acme_document, share="steer")
    key = acme_document.share_key
    steerers = [
        (await open_as(world.alice, acme_document))[0],
        (await open_as(world.alice, acme_document))[0],
        (await open_with_key(acme_document, key))[0],
    ]
    followers = [
        (await open_as(world.bob, acme_document))[0],
        (await open_with_key(acme_document, key))[0],
    ]
    rng = random.Random(7)
    actions = 0

    async def storm(comm, name):
        nonlocal actions
        for step in range(6):
            if rng.random() < 0.35:
                # Every version has 3 pages, so every page request below is in range.
                await comm.send_to(bytes_data=numbers_tsv(250 + step, tag=f"{name}{step}"))
            else:
                await send(comm, {"type": "page", "page_no": rng.randint(1, 3)})
            actions += 1
            await asyncio.sleep(rng.random() * 0.01)

    start_state = (await current_page(acme_document.pk))["state"]
    await asyncio.gather(*(storm(c, f"s{i}-") for i, c in enumerate(steerers)))
    # Every action is one state change: wait until the database has them all.
    for _ in range(200):
        final = await current_page(acme_document.pk)
        if final["state"] == start_state + actions:
            break
        await asyncio.sleep(0.05)
    assert final["state"] == start_state + actions

    for viewer in steerers + followers:
        states, last = [], None
        for frame in await drain(viewer, 0.5):
            if frame["type"] == "page":
                states.append(frame["state"])
                last = frame
        assert states == sorted(set(states)), "a viewer went back to an older state"
        assert (last["version"], last["page_no"], last["state"]) == (
            final["version"],
            final["page_no"],
            final["state"],
        )
        assert last["data"] == final["data"]
    document = await database_sync_to_async(Document.objects.get)(pk=acme_document.pk)
    assert document.state_seq == final["state"]
    await close_all(*steerers, *followers)
