"""addproducer: a producer of any built-in kind on an existing feed, feeds named by name or UUID."""

import json

import pytest
from django.core.management import CommandError, call_command

from streams.management.commands.runproducer import find_producer
from streams.models import FeedKind, Producer, ProducerKind
from streams.services import feed_create


def add(capsys, *args: str) -> dict:
    call_command("addproducer", *args, "--json")
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def chain_feeds(world):
    return {
        name: feed_create(tenant=world.acme, name=name, kind=kind)
        for name, kind in (("clock", FeedKind.NUMERIC), ("pin", FeedKind.BINARY))
    }


def test_feeds_named_by_name_become_the_tenants_feed_uuids(capsys, world, chain_feeds):
    made = add(capsys, "--tenant", "acme", "--feed", "pin", "--kind", "iopin",
               "--config", '{"source": "clock"}')  # fmt: skip
    producer = Producer.objects.get(uuid=made["uuid"])
    assert producer.feed == chain_feeds["pin"] and made["token"] is None
    assert producer.config["source"] == str(chain_feeds["clock"].uuid)


def test_clock_ack_feed_by_uuid_and_external_token_shown_once(capsys, world, chain_feeds):
    pin = str(chain_feeds["pin"].uuid)
    clock = add(capsys, "--tenant", "acme", "--feed", "clock", "--kind", "clock",
                "--config", json.dumps({"interval_ms": 500, "ack_feed": pin}))  # fmt: skip
    assert Producer.objects.get(uuid=clock["uuid"]).config["ack_feed"] == pin
    external = add(capsys, "--tenant", "acme", "--feed", pin, "--kind", "external")
    assert Producer.objects.get(uuid=external["uuid"]).token_hash == Producer.hash_token(
        external["token"]
    )


def test_another_tenants_feed_is_not_found(world, chain_feeds):
    feed_create(tenant=world.globex, name="theirs")
    with pytest.raises(CommandError, match="No feed 'theirs'"):
        call_command("addproducer", "--tenant", "acme", "--feed", "pin", "--kind", "buzzer",
                     "--config", '{"source": "theirs"}')  # fmt: skip
    assert not Producer.objects.exists()


def test_an_ambiguous_name_is_refused_with_the_candidates(world, chain_feeds):
    twin = feed_create(tenant=world.acme, name="clock", kind=FeedKind.NUMERIC)
    with pytest.raises(CommandError, match=str(twin.uuid)):
        call_command("addproducer", "--tenant", "acme", "--feed", "clock", "--kind", "clock")


def test_runproducer_finds_a_feeds_one_builtin_producer(capsys, world, chain_feeds):
    made = add(capsys, "--tenant", "acme", "--feed", "pin", "--kind", ProducerKind.IOPIN,
               "--config", '{"source": "clock"}')  # fmt: skip
    add(capsys, "--tenant", "acme", "--feed", "pin", "--kind", "external")
    assert str(find_producer("pin").uuid) == made["uuid"]
    assert str(find_producer(str(chain_feeds["pin"].uuid)).uuid) == made["uuid"]
