"""/metrics carries user-chosen feed names only as escaped label values."""

from __future__ import annotations

import re
import time

import pytest
from django.urls import reverse

from streams.models import FeedKind
from streams.services import feed_create
from streamsite import hub, metrics

pytestmark = pytest.mark.django_db(transaction=True)

# One sample line of the text exposition format: name, optional labels, value.
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE_LINE = re.compile(rf"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{{{LABEL}(,{LABEL})*\}})? \S+$")
HOSTILE_NAME = 'evil"} 1\nstreamsite_forged_total 999\n# TYPE x \\ counter'


def unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), value)


def test_feed_name_with_newline_and_quotes_cannot_forge_lines(client, world):
    feed = feed_create(tenant=world.acme, name=HOSTILE_NAME, kind=FeedKind.NUMERIC)
    last_minute = int(time.time() // 60) - 1
    hub.sync_client().set(metrics.samples_key(str(feed.uuid), last_minute), 60)
    body = client.get(reverse("metrics")).content.decode()
    lines = body.splitlines()
    assert not any(line.startswith("streamsite_forged") for line in lines)
    for line in lines:
        assert line.startswith("# ") or SAMPLE_LINE.match(line), line
    rate = next(line for line in lines if str(feed.uuid) in line)
    name = re.search(r'name="((?:[^"\\]|\\.)*)"', rate).group(1)
    assert unescape(name) == HOSTILE_NAME and rate.endswith(" 1.000")


@pytest.mark.parametrize(
    ("text", "escaped"),
    [("plain", "plain"), ('a"b', 'a\\"b'), ("a\\b", "a\\\\b"), ("a\nb", "a\\nb")],
)
def test_label_values_are_escaped_per_the_exposition_format(text, escaped):
    assert metrics.label_value(text) == escaped
