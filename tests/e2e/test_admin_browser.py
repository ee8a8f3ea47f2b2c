"""The operator's console in a real headless Chromium, against the real server.

Each revocation is made by clicking in the admin while a real WebSocket client
is connected to the same Daphne; the client must be closed (4403) within 5 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import psutil
import pytest
from django.contrib.auth import get_user_model
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from streams.models import Producer
from tenants.models import Membership
from tests.conftest import PASSWORD, ROOT, Daphne, server_env, session_cookie_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

REVOKED = 4403
WITHIN_SECONDS = 5.0


@pytest.fixture
def server():
    daphne = Daphne().start()
    yield daphne
    daphne.stop()


@pytest.fixture
def operator(world, browser, server):
    """Alice, owner of acme and staff, signed in to /admin/; confirmations are accepted."""
    get_user_model().objects.filter(pk=world.alice.pk).update(is_staff=True)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{server.http}/admin/login/?next=/admin/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")
    yield page
    context.close()


def hello(socket: ClientConnection) -> dict:
    """The viewer's first frame (presence frames may come first)."""
    while True:
        frame = json.loads(socket.recv(timeout=5))
        if frame["type"] != "presence":
            return frame


def closed_after(socket: ClientConnection, start: float) -> tuple[int | None, float]:
    """Wait for the server to close the socket; its close code and seconds since ``start``."""
    deadline = start + WITHIN_SECONDS + 5
    try:
        while True:
            socket.recv(timeout=max(0.05, deadline - time.monotonic()))
    except ConnectionClosed as closed:
        return (closed.rcvd.code if closed.rcvd else None), time.monotonic() - start
    except TimeoutError:
        return None, time.monotonic() - start


def report(what: str, seconds: float) -> None:
    print(f"\n{what}: {seconds:.2f} s")


def test_operator_creates_a_producer_sees_its_token_once_and_rotating_it_cuts_the_publisher(
    operator, server, acme_feed
):
    feed = acme_feed.feed
    operator.goto(f"{server.http}/admin/streams/producer/add/?kind=external")
    operator.select_option("#id_feed", label=f"{feed.name} · {feed.tenant.slug} · {feed.uuid}")
    operator.fill("#id_name", "sensor")
    operator.click("input[name=_continue]")
    token = operator.text_content("code.one-time-secret")
    assert token and token.startswith("sst_")
    operator.reload()
    assert operator.locator("code.one-time-secret").count() == 0
    assert token not in operator.content()

    url = f"{server.ws}/ws/feeds/{feed.uuid}/publish/"
    with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as publisher:
        publisher.send(json.dumps({"value": 1}))
        assert json.loads(publisher.recv(timeout=5))["type"] == "ack"
        start = time.monotonic()
        operator.click("button[name=rotate_token]")
        code, seconds = closed_after(publisher, start)
    report("token rotation -> publisher closed", seconds)
    assert code == REVOKED and seconds <= WITHIN_SECONDS

    new_token = operator.text_content("code.one-time-secret")
    assert new_token and new_token != token
    operator.screenshot(path=str(ROOT / "var" / "admin-producer-rotated.png"), full_page=True)
    with connect(url, additional_headers={"Authorization": f"Bearer {new_token}"}) as again:
        again.send(json.dumps({"value": 0}))
        assert json.loads(again.recv(timeout=5))["type"] == "ack"


def test_revoking_a_share_key_in_the_admin_cuts_its_viewers(operator, server, acme_feed):
    feed = acme_feed.feed
    url = f"{server.ws}/ws/feeds/{feed.uuid}/?key={feed.share_key}"
    with connect(url) as viewer:
        assert hello(viewer)["type"] == "hello"
        operator.goto(f"{server.http}/admin/streams/feed/{feed.pk}/change/")
        start = time.monotonic()
        operator.click("button[name=revoke_share_key]")
        code, seconds = closed_after(viewer, start)
    report("share key revocation -> viewer closed", seconds)
    assert code == REVOKED and seconds <= WITHIN_SECONDS
    assert "revoked" in operator.text_content("ul.messagelist")
    with pytest.raises(InvalidStatus):
        connect(url).close()


def test_removing_a_membership_in_the_admin_cuts_that_members_viewer(
    operator, server, world, acme_feed
):
    headers = {"Cookie": session_cookie_for(world.bob), "Origin": server.http}
    url = f"{server.ws}/ws/feeds/{acme_feed.feed.uuid}/"
    with connect(url, additional_headers=headers) as viewer:
        assert hello(viewer)["type"] == "hello"
        operator.goto(f"{server.http}/admin/tenants/membership/")
        operator.click("#result_list a:text-is('bob')")
        operator.click("a.deletelink")
        start = time.monotonic()
        operator.click("input[type=submit]")  # "Yes, I'm sure"
        code, seconds = closed_after(viewer, start)
    report("membership removal -> viewer closed", seconds)
    assert code == REVOKED and seconds <= WITHIN_SECONDS
    assert not Membership.objects.filter(user=world.bob, tenant=world.acme).exists()


def wait_until(predicate, timeout: float) -> float:
    """Seconds until predicate() is true; fails after timeout."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            pytest.fail(f"not within {timeout} s")
        time.sleep(0.1)
    return time.monotonic() - start


def test_disabling_a_producer_in_the_admin_stops_it_and_enabling_starts_it(
    operator, server, acme_feed
):
    producer = acme_feed.producer
    supervisor = subprocess.Popen(
        [sys.executable, "manage.py", "runproducers"],
        cwd=ROOT,
        env=server_env(),
        stdout=subprocess.DEVNULL,
    )
    children = psutil.Process(supervisor.pid).children

    def status() -> str:
        return Producer.objects.get(pk=producer.pk).status

    try:
        wait_until(lambda: status() == "running", timeout=15)
        assert len(children()) == 1
        change = f"{server.http}/admin/streams/producer/{producer.pk}/change/"
        operator.goto(change)
        start = time.monotonic()
        operator.click("button[name=disable]")
        wait_until(lambda: status() == "stopped" and not children(), timeout=10)
        stopped = time.monotonic() - start
        report("disable -> runproducers stopped the producer", stopped)
        assert stopped <= WITHIN_SECONDS
        operator.goto(f"{server.http}/admin/streams/producer/")
        assert operator.text_content(".field-state") == "stopped"

        operator.goto(change)
        start = time.monotonic()
        operator.click("button[name=enable]")
        wait_until(lambda: status() == "running" and len(children()) == 1, timeout=15)
        report("enable -> runproducers started it again", time.monotonic() - start)
        operator.goto(f"{server.http}/admin/streams/producer/")
        assert operator.text_content(".field-state") == "running"
        operator.screenshot(path=str(ROOT / "var" / "admin-producers.png"), full_page=True)
    finally:
        supervisor.terminate()
        supervisor.wait(15)


def test_feed_page_shows_who_is_watching_now(operator, server, world, acme_feed):
    # The console's front page checks /healthz (database and Redis) on the way.
    operator.wait_for_function("document.getElementById('health').dataset.state !== 'checking'")
    assert operator.text_content("#health") == "ok (database: ok, redis: ok, hub: ok)"
    operator.screenshot(path=str(ROOT / "var" / "admin-index.png"))
    feed = acme_feed.feed
    headers = {"Cookie": session_cookie_for(world.bob), "Origin": server.http}
    with (
        connect(f"{server.ws}/ws/feeds/{feed.uuid}/", additional_headers=headers) as member,
        connect(f"{server.ws}/ws/feeds/{feed.uuid}/?key={feed.share_key}") as by_key,
    ):
        hello(member)
        hello(by_key)
        operator.goto(f"{server.http}/admin/streams/feed/")
        assert operator.text_content(".field-watching_count") == "2"
        operator.goto(f"{server.http}/admin/streams/feed/{feed.pk}/change/")
        rows = operator.locator("table.watching-now tbody tr").all_inner_texts()
        assert len(rows) == 2
        assert rows[0].startswith("bob\tsigned in\t")
        assert rows[1].startswith("share-key viewer\tshare key\t")
        assert all(" s ago)" in row for row in rows)
        operator.screenshot(path=str(ROOT / "var" / "admin-feed.png"), full_page=True)
    # Once they leave, the page says so.
    time.sleep(0.2)
    operator.reload()
    assert "Nobody is watching right now." in operator.text_content(".field-watching_now")
