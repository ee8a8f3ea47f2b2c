"""tailfeed over the client library, in-process against the real server.

(Printing the posterior and resuming across a server restart: tests/e2e/test_feed_resume.py.)
"""

import io
import threading

import pytest
from django.core.management import CommandError, call_command

from streams.models import FeedKind
from streams.services import feed_create
from streamsite import checkout

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_tailfeed_with_a_wrong_key_says_refused_and_does_not_retry(daphne, acme_feed):
    with pytest.raises(CommandError, match="Refused: no such feed, or a wrong key."):
        call_command(
            "tailfeed", str(acme_feed.feed.uuid), "--url", daphne.http, "--key", "wrong",
            stdout=io.StringIO(),
        )  # fmt: skip


def test_tailfeed_needs_a_key_when_the_feed_has_none(world):
    feed = feed_create(tenant=world.acme, name="private", kind=FeedKind.BINARY, share=False)
    with pytest.raises(CommandError, match="pass --key"):
        call_command("tailfeed", str(feed.uuid), stdout=io.StringIO())


def test_tailfeed_without_url_reaches_the_server_make_run_recorded(
    daphne, acme_feed, tmp_path, monkeypatch
):
    record = tmp_path / "server-url"
    record.write_text(daphne.http + "\n")  # what make run records in var/server/url
    monkeypatch.setattr(checkout, "SERVER_URL_FILE", record)
    outcome: list[BaseException | None] = []

    def tail() -> None:
        try:
            call_command(
                "tailfeed", str(acme_feed.feed.uuid), "--key", "wrong", stdout=io.StringIO()
            )
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome.append(exc)

    # Without the record it would retry 127.0.0.1:8000 forever: a thread, and a bound.
    worker = threading.Thread(target=tail, daemon=True)
    worker.start()
    worker.join(60)

    assert outcome, "tailfeed never reached the recorded server"
    assert isinstance(outcome[0], CommandError) and "Refused" in str(outcome[0])
