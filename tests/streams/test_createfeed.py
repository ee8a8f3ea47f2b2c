import json

import pytest
from django.core.management import CommandError, call_command

from streams.models import Feed, Producer


def run(*args) -> list[dict]:
    from io import StringIO

    out = StringIO()
    call_command("createfeed", *args, stdout=out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_prints_uuid_key_and_a_token_that_is_stored_only_hashed(world):
    (result,) = run("--tenant", "acme", "--name", "coin", "--share", "--producer", "bernoulli",
                    "--json")  # fmt: skip
    feed = Feed.objects.get(uuid=result["uuid"])
    assert feed.tenant == world.acme and result["key"] == feed.share_key
    producer = Producer.objects.get(feed=feed)
    assert producer.config == {"p": 0.72, "interval_ms": 100}
    assert result["token"].startswith("sst_")
    assert producer.token_hash == Producer.hash_token(result["token"])
    assert result["token"] not in json.dumps(list(Producer.objects.values()), default=str)


def test_without_share_or_producer_key_and_token_are_null(world):
    (result,) = run("--tenant", "acme", "--name", "quiet", "--kind", "numeric", "--json")
    assert result["key"] is None and result["token"] is None
    assert Feed.objects.get(uuid=result["uuid"]).kind == "numeric"


def test_count_creates_many_feeds_one_json_line_each(world):
    results = run("--tenant", "acme", "--name", "bulk", "--count", "3", "--share", "--json")
    names = Feed.objects.filter(uuid__in=[r["uuid"] for r in results]).values_list(
        "name", flat=True
    )
    assert sorted(names) == ["bulk-1", "bulk-2", "bulk-3"]


@pytest.mark.parametrize(
    "args",
    [
        ["--tenant", "nope", "--name", "x"],
        ["--tenant", "acme", "--name", "x", "--producer", "bernoulli", "--config", '{"p": 2}'],
        ["--tenant", "acme", "--name", "x", "--producer", "iopin", "--config", "{}"],
    ],
)
def test_bad_arguments_are_clear_errors_and_create_nothing(world, args):
    with pytest.raises(CommandError):
        run(*args)
    assert not Feed.objects.exists()
