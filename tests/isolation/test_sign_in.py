"""Sign-in guessing: 100 wrong passwords for one account, on both sign-in pages.

After the failure limit (AXES_FAILURE_LIMIT, small here) every further
attempt is refused with HTTP 429, the right password too while the lock
lasts; the neighbour signs in to its own account, from its own address,
throughout.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import PASSWORD
from tests.isolation.conftest import CAPS, assert_isolated
from tests.isolation.harness import ATTACKER_ADDRESS, Browser

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

GUESSES = 100
# Guesses past the failure limit tried before concluding there is no lock-out.
GRACE = 10
RSS_BOUND_MB = 50
SIGN_IN_PAGES = ["/accounts/login/", "/admin/login/"]


@pytest.mark.parametrize("page", SIGN_IN_PAGES)
def test_password_guessing_is_locked_out_and_neighbour_signs_in(page, server, world, probed):
    world.alice.is_staff = True  # the admin signs in staff only
    world.alice.save(update_fields=["is_staff"])
    limit = CAPS["AXES_FAILURE_LIMIT"]
    browser = Browser(server, source=ATTACKER_ADDRESS)

    async def attack() -> dict:
        statuses = []
        for n in range(GUESSES):
            answer = await asyncio.to_thread(browser.sign_in, "alice", f"guess-{n}", path=page)
            statuses.append(answer.status)
            if n >= limit + GRACE and 429 not in statuses:
                break  # no lock-out in sight: each guess costs a password hash; stop here
        right = await asyncio.to_thread(browser.sign_in, "alice", PASSWORD, path=page)
        return {"statuses": statuses, "right": right}

    outcome = probed(attack, label=f"sign-in guessing on {page}", sign_in=True)
    statuses, right = outcome.result["statuses"], outcome.result["right"]
    counts = {status: statuses.count(status) for status in sorted(set(statuses))}
    first_refusal = statuses.index(429) + 1 if 429 in statuses else None
    print(
        f"attacker: {len(statuses)} wrong passwords answered {counts} (first 429 at attempt "
        f"{first_refusal}); then the right one: {right.status}"
    )
    problems = []
    if any(status not in (200, 429) for status in statuses):
        problems.append(f"attacker: wrong passwords answered {counts} (200 or 429 expected)")
    late = statuses[limit:]
    if len(statuses) < GUESSES or late.count(429) != len(late):
        problems.append(
            f"attacker: {len(late) - late.count(429)} of the {len(late)} attempts after the "
            f"failure limit of {limit} were not refused 429 ({counts})"
        )
    if right.status != 429 or not right.body:
        problems.append(
            f"attacker: the right password while locked answered {right.status}, not 429"
        )
    assert_isolated(outcome, rss_bound_mb=RSS_BOUND_MB, attacker_problems=problems)
