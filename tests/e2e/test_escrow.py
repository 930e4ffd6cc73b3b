"""Escrow end to end: users that failed for good on the first sync are retried by later detect cycles on
the connector's schedule, converge once fixed in Salesforce, and are emailed about once per failure.
The schedule runs on the wall clock in hours; "time passes" here by moving an entry's due time into
the past in the state store, which is what the clock would do."""
from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import AsyncIterator

import pytest_asyncio

from cli.demo import run_cycle as demo_cycle
from cli.local_stack import QUEUE, LocalStack, app_settings, local_stack
from shared.core.escrow import EscrowEntry

run_cycle = partial(demo_cycle, idle_seconds=0.4)
SIX_HOURS = timedelta(hours=6)


@pytest_asyncio.fixture(scope="module")
async def stack() -> AsyncIterator[LocalStack]:
    with local_stack(users=40, retry_base_seconds=0.2) as running:
        async with app_settings(running):
            running.first = await run_cycle(running)  # type: ignore[attr-defined]
            yield running


def state():
    from shared.bootstrap import current_container

    return current_container().state


def entries() -> dict[str, EscrowEntry]:
    return {e.entra_id: e for e in state().escrows()}


def make_due(entra_id: str, *, age: timedelta = SIX_HOURS) -> EscrowEntry:
    """Let `age` pass since the entry's first failure: its due retry is now in the past."""
    entry = entries()[entra_id]
    first = datetime.now(timezone.utc) - age - timedelta(seconds=1)
    moved = replace(entry, first_failed_at=first.isoformat(),
                    next_retry_at=(datetime.fromisoformat(entry.next_retry_at) - age - timedelta(seconds=1)).isoformat())
    state().put_escrow(moved)
    return moved


def dead_letters(stack: LocalStack) -> int:
    return len(stack.servicebus.messages_seen(QUEUE, dead_letter=True))


def in_salesforce(stack: LocalStack, user_id: str) -> bool:
    upn = stack.tenant.find_user(user_id)["userPrincipalName"].lower()
    return any(u["Username"].lower() == upn and u["IsActive"] for u in stack.org.users())


async def test_failed_users_wait_in_escrow_until_their_retry_is_due(stack: LocalStack):
    first = stack.first  # type: ignore[attr-defined]
    escrowed = entries()
    assert first.summary.failures and Counter(e.code for e in escrowed.values()) == first.summary.failures
    for entry in escrowed.values():
        failed_at = datetime.fromisoformat(entry.first_failed_at)
        assert datetime.fromisoformat(entry.next_retry_at) == failed_at + SIX_HOURS
        assert entry.reported_code == entry.code  # the first sync's digest reported each of them
    sent = len(stack.servicebus.messages_seen(QUEUE))
    again = await run_cycle(stack)  # nothing is due for hours: no retry, no mail
    assert again.emails == 0 and entries().keys() == escrowed.keys()
    assert not [m for m in stack.servicebus.messages_seen(QUEUE)[sent:] if ".escrow." in (m.message_id or "")]


async def test_a_user_fixed_in_salesforce_converges_and_a_repeat_failure_is_not_emailed_again(stack: LocalStack):
    escrowed = entries()
    [taken] = [i for i, e in sorted(escrowed.items()) if e.code == "DUPLICATE_USERNAME"][:1]
    [mailless] = [i for i, e in sorted(escrowed.items()) if e.code == "REQUIRED_FIELD_MISSING"][:1]
    upn = stack.tenant.find_user(taken)["userPrincipalName"]
    stack.org.registry.release(upn, "another org")  # the other org freed the username
    used, _ = stack.org.license_usage("Salesforce")
    stack.org.set_license_pool("Salesforce", used + 1)  # and a licence is there for it, whatever its profile
    make_due(taken)
    before = make_due(mailless)
    mails, dead = len(stack.graph.outbox), dead_letters(stack)

    cycle = await run_cycle(stack)
    assert in_salesforce(stack, taken) and taken not in entries()  # converged without re-assigning
    still = entries()[mailless]
    assert (still.failures, still.retries) == (2, 1)
    assert datetime.fromisoformat(still.next_retry_at) == datetime.fromisoformat(before.first_failed_at) + 2 * SIX_HOURS
    assert dead_letters(stack) == dead + 1 and cycle.emails == 0 and len(stack.graph.outbox) == mails  # once per failure

    # The same user failing for another reason is news: emailed again (checked before any call).
    # Meanwhile another user's 28 days are over: it leaves the escrow without a retry.
    stack.tenant.update_user(mailless, mail=f"back.{mailless[:8]}@contoso.com", surname="L" * 81)
    make_due(mailless, age=2 * SIX_HOURS)
    [expired, *others] = sorted(set(entries()) - {mailless})
    make_due(expired, age=timedelta(days=29, hours=1))
    sent = len(stack.servicebus.messages_seen(QUEUE))
    cycle = await run_cycle(stack)
    assert cycle.emails == 1 and "STRING_TOO_LONG" in stack.graph.outbox[-1].subject
    assert mailless in stack.graph.outbox[-1].body
    assert entries()[mailless].reported_code == "STRING_TOO_LONG"
    assert expired not in entries() and set(others) <= set(entries())
    assert not [m for m in stack.servicebus.messages_seen(QUEUE)[sent:] if m.message_id.startswith(f"{expired}.escrow.")]
