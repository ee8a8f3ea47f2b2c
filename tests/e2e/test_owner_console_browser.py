"""A tenant owner without staff status runs their tenant from the console, in a real browser.

Alice owns acme and is not staff. She signs in to /admin/, creates a feed and a
Bernoulli producer through the typed forms and watches it live; builds the
clock -> IO pin -> buzzer chain through the forms; adds a member, who then sees
the feed. runproducers runs beside the real server, as `make run` does.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from django.contrib.auth import get_user_model

from streams.models import Feed
from tests.conftest import PASSWORD, ROOT, Daphne, password_hash, server_env

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def server():
    daphne = Daphne().start()
    yield daphne
    daphne.stop()


@pytest.fixture
def producers(server):
    supervisor = subprocess.Popen(
        [sys.executable, "manage.py", "runproducers"],
        cwd=ROOT, env=server_env(), stdout=subprocess.DEVNULL,
    )  # fmt: skip
    yield supervisor
    supervisor.terminate()
    supervisor.wait(15)


def sign_in(browser, server, username: str, path: str):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{server.http}{path}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("[type=submit]")
    return page


def eventually(predicate, timeout: float = 30.0) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            pytest.fail(f"not within {timeout} s")
        time.sleep(0.2)
    return time.monotonic() - start


def add_feed(page, server, tenant_pk: int, name: str, kind: str) -> Feed:
    page.goto(f"{server.http}/admin/streams/feed/add/?tenant={tenant_pk}")
    page.fill("#id_name", name)
    page.select_option("#id_kind", kind)
    page.click("input[name=_save]")
    page.wait_for_url("**/admin/streams/feed/")
    return Feed.objects.get(name=name)


def add_producer(page, server, feed: Feed, kind: str, **fields: str | Feed) -> None:
    page.goto(f"{server.http}/admin/streams/producer/add/?kind={kind}")
    page.select_option("#id_feed", str(feed.pk))
    for name, value in fields.items():
        if isinstance(value, Feed):
            page.select_option(f"#id_{name}", str(value.pk))
        else:
            page.fill(f"#id_{name}", value)
    page.click("input[name=_save]")
    page.wait_for_url("**/admin/streams/producer/")


def test_an_owner_without_staff_status_builds_the_demo_from_the_browser(
    world, browser, server, producers
):
    assert not world.alice.is_staff
    owner = sign_in(browser, server, "alice", "/admin/login/?next=/admin/")
    owner.wait_for_url("**/admin/")
    assert "Feeds" in owner.content() and "Producers" in owner.content()

    # A feed with a Bernoulli producer, seen live on its page.
    flips = add_feed(owner, server, world.acme.pk, "flips", "binary")
    add_producer(owner, server, flips, "bernoulli", p="0.72", interval_ms="100")
    owner.goto(f"{server.http}{flips.get_absolute_url()}")
    owner.wait_for_function("Number(document.getElementById('n').textContent) > 3", timeout=20_000)

    # The chain, through the typed forms and the feed pickers.
    clock = add_feed(owner, server, world.acme.pk, "clock", "numeric")
    pin = add_feed(owner, server, world.acme.pk, "pin", "binary")
    buzzer = add_feed(owner, server, world.acme.pk, "buzzer", "binary")
    add_producer(owner, server, pin, "iopin", source=clock, chance="0.5")
    add_producer(owner, server, buzzer, "buzzer", source=pin)
    add_producer(owner, server, clock, "clock", interval_ms="100", count="0", ack_feed=pin,
                 ack_timeout_ms="5000")  # fmt: skip
    took = eventually(lambda: Feed.objects.get(pk=buzzer.pk).last_seq >= 2, timeout=60)
    print(f"\nchain built in the browser: two buzzes {took:.1f} s after the clock was added")
    pin_values = list(pin.samples.order_by("seq").values_list("value", flat=True))
    flips_to_one = sum(
        1 for a, b in zip(pin_values, pin_values[1:], strict=False) if (a, b) == (0, 1)
    )
    assert Feed.objects.get(pk=buzzer.pk).last_seq <= flips_to_one + int(pin_values[:1] == [1])

    # A member invited by username accepts and sees the feed.
    get_user_model().objects.create(username="dave", password=password_hash())
    owner.goto(f"{server.http}/admin/tenants/membership/add/?tenant={world.acme.pk}")
    owner.fill("#id_username", "dave")
    owner.select_option("#id_role", "viewer")
    owner.click("input[name=_save]")
    owner.wait_for_url("**/admin/tenants/membership/")
    link = owner.text_content("code.one-time-secret")
    member = sign_in(browser, server, "dave", "/accounts/login/")
    member.wait_for_url(f"{server.http}/")
    assert "flips" not in member.content()
    member.goto(link)
    with member.expect_navigation():
        member.click("main button[type=submit]")  # not the header's "Sign out"
    assert "flips" in member.content()
    member.goto(f"{server.http}{flips.get_absolute_url()}")
    member.wait_for_function("Number(document.getElementById('n').textContent) > 0", timeout=20_000)
