"""tailfeed over the client library, in-process against the real server.

(Printing the posterior and resuming across a server restart: tests/e2e/test_feed_resume.py.)
"""

import io

import pytest
from django.core.management import CommandError, call_command

from streams.models import FeedKind
from streams.services import feed_create

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
