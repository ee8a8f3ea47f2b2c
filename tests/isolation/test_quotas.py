"""Tenant quotas: at QUOTA_MAX_FEEDS or QUOTA_MAX_DOCUMENTS a tenant is refused
``quota_exceeded`` naming the limit, and nothing is created; the neighbour creates fine.

Feeds have no HTTP route for creating them: the command line (createfeed) is
what a tenant's operator uses. Documents are created over HTTP (POST /documents/).
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import override_settings

from documents.models import Document
from streams.models import Feed
from tenants.services import tenant_create
from tests.conftest import password_hash
from tests.documents.conftest import numbers_tsv
from tests.isolation.conftest import start_server
from tests.isolation.harness import ATTACKER_ADDRESS, PROBE_ADDRESS, Browser

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

QUOTA = 3


def new_tenant(slug: str):
    """A tenant and its owner made while the quota setting is in force."""
    owner = get_user_model().objects.create(username=f"{slug}-owner", password=password_hash())
    return tenant_create(slug=slug, name=slug.title(), owner=owner), owner


def test_tenant_at_its_feed_quota_is_refused_and_neighbour_creates():
    with override_settings(QUOTA_MAX_FEEDS=QUOTA):
        initech, _ = new_tenant("initech")
        hooli, _ = new_tenant("hooli")
        error = None
        try:
            call_command(
                "createfeed", "--tenant=initech", "--name=spam", f"--count={QUOTA + 2}", "--json"
            )
        except Exception as exc:  # the command's refusal, whatever its class
            error = exc
        call_command("createfeed", "--tenant=hooli", "--name=fine", "--json")
    created = Feed.objects.filter(tenant=initech).count()
    print(
        f"attacker: {created} feeds created of {QUOTA + 2} asked (quota {QUOTA}); refusal: {error!r}"
    )
    assert created == QUOTA, f"attacker: {created} feeds created with a quota of {QUOTA}"
    named = error is not None and (
        getattr(error, "limit", None) == "max_feeds" or "max_feeds" in str(error).lower()
    )
    assert named, f"attacker: refusal {error!r} names no max_feeds"
    assert Feed.objects.filter(tenant=hooli).count() == 1


def test_tenant_at_its_document_quota_gets_429_and_neighbour_creates(transactional_db, tmp_path):
    with override_settings(QUOTA_MAX_DOCUMENTS=QUOTA):
        initech, mallory = new_tenant("initech")
        hooli, richard = new_tenant("hooli")
    server = start_server(tmp_path, QUOTA_MAX_DOCUMENTS=QUOTA)
    try:
        attacker = Browser(server, source=ATTACKER_ADDRESS)
        attacker.sign_in(mallory.username)
        answers = []
        for n in range(QUOTA + 2):
            attacker.csrf()
            answers.append(
                attacker.request(
                    "POST",
                    "/documents/",
                    form={"tenant": str(initech.pk), "name": f"spam {n}"},
                    files={"file": (f"spam{n}.tsv", numbers_tsv(3))},
                    headers={"Accept": "application/json"},
                )
            )
        neighbour = Browser(server, source=PROBE_ADDRESS)
        neighbour.sign_in(richard.username)
        neighbour.csrf()
        fine = neighbour.request(
            "POST",
            "/documents/",
            form={"tenant": str(hooli.pk), "name": "fine"},
            files={"file": ("fine.tsv", numbers_tsv(3))},
            headers={"Accept": "application/json"},
        )
    finally:
        server.stop()
    created = Document.objects.filter(tenant=initech).count()
    print(
        f"attacker: {[a.status for a in answers]}; {created} documents created (quota {QUOTA}); neighbour {fine.status}"
    )
    refused = answers[QUOTA:]
    problems = []
    if created != QUOTA:
        problems.append(f"attacker: {created} documents created with a quota of {QUOTA}")
    wrong = [
        str(a)
        for a in refused
        if a.status != 429
        or (a.json() or {}).get("error") != "quota_exceeded"
        or (a.json() or {}).get("limit") != "max_documents"
    ]
    if wrong:
        problems.append(
            f"attacker: past the quota, answered {wrong[:2]} (429 quota_exceeded/max_documents expected)"
        )
    if fine.status != 200:
        problems.append(f"neighbour: creating a document answered {fine}")
    assert not problems, "\n".join(problems)
