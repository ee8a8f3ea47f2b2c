"""loaddemo: the whole system of the write-ups, once, however often make run starts."""

import pytest
from django.core.management import call_command

from documents.models import Document
from streams.models import Feed, Producer, ProducerKind

pytestmark = pytest.mark.django_db


def test_demo_has_the_bernoulli_feed_the_machine_chain_and_a_shared_document(capsys):
    call_command("loaddemo", "--base-url", "http://127.0.0.1:8000")
    printed = capsys.readouterr().out
    kinds = {p.kind: p for p in Producer.objects.select_related("feed")}
    assert set(kinds) == {"bernoulli", "clock", "iopin", "buzzer"}
    pin, clock = kinds[ProducerKind.IOPIN].feed, kinds[ProducerKind.CLOCK].feed
    assert kinds[ProducerKind.IOPIN].config["source"] == str(clock.uuid)
    assert kinds[ProducerKind.BUZZER].config["source"] == str(pin.uuid)
    assert kinds[ProducerKind.CLOCK].config["ack_feed"] == str(pin.uuid)
    document = Document.objects.get()
    assert document.share_key and document.row_count == 1000
    for feed in Feed.objects.all():
        assert f"http://127.0.0.1:8000{feed.get_absolute_url()}" in printed
    assert document.share_key in printed


def test_loading_the_demo_again_adds_nothing():
    call_command("loaddemo")
    call_command("loaddemo")
    assert (Feed.objects.count(), Producer.objects.count(), Document.objects.count()) == (4, 4, 1)
