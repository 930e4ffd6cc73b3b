"""The deletion threshold end to end: Entra changes → detect timer → Service Bus → provision, with a
threshold of 5 deactivations per hour; holds reported by one email; the admin's `python -m cli
held / release-held / reject-held`. One local stack; the steps build on each other in order, since the
rolling window they share is the point."""
from __future__ import annotations

import asyncio
import json
from functools import partial
from typing import AsyncIterator

import pytest
import pytest_asyncio

from cli.__main__ import main as cli_main
from cli.demo import run_cycle as demo_cycle
from cli.local_stack import LocalStack, app_settings, local_stack

from .untouched_users import untouched_users

THRESHOLD = 5
run_cycle = partial(demo_cycle, idle_seconds=0.4)


@pytest_asyncio.fixture(scope="module")
async def stack() -> AsyncIterator[LocalStack]:
    with local_stack(users=60, retry_base_seconds=0.2) as running:
        async with app_settings(running, {"DEACTIVATION_THRESHOLD": str(THRESHOLD), "DEACTIVATION_THRESHOLD_PERCENT": "0"}):
            await run_cycle(running)
            yield running


def state():
    from shared.bootstrap import current_container

    return current_container().state


_USED: set[str] = set()


def active_users(stack: LocalStack, count: int) -> list[str]:
    """Provisioned, enabled users no earlier step touched."""
    return untouched_users(stack, state(), count, _USED)


def is_active(stack: LocalStack, user_id: str) -> bool:
    return stack.org.get_user(state().get_link(user_id).salesforce_id)["IsActive"]


def disable(stack: LocalStack, user_ids: list[str]) -> None:
    for user_id in user_ids:
        stack.tenant.update_user(user_id, accountEnabled=False)


async def cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = await asyncio.to_thread(cli_main, list(argv))  # the CLI runs its own event loop
    return code, capsys.readouterr().out


async def test_threshold_holds_reports_once_and_the_admin_releases_or_rejects(stack: LocalStack, capsys):
    # Below the threshold nothing is held and nobody is emailed.
    few = active_users(stack, 3)
    disable(stack, few)
    mails = len(stack.graph.outbox)
    cycle = await run_cycle(stack)
    assert not any(is_active(stack, u) for u in few)
    assert cycle.summary.outcome["deactivated"] == 3 and cycle.emails == 0
    assert state().held_deactivations() == []

    # 7 more leave within the hour: 2 fit in the window, 5 are held; the users stay active; one email.
    many = active_users(stack, 7)
    disable(stack, many)
    code, out = await cli(capsys, "plan")  # the dry run warns beforehand
    assert code == 0 and f"7 deactivations are planned, more than the deletion threshold allows per window ({THRESHOLD})" in \
        " ".join(out.split())
    cycle = await run_cycle(stack)
    assert cycle.dead_lettered == 0  # held users' messages complete normally
    held = {h.entra_id for h in state().held_deactivations()}
    assert len(held) == 5 and held <= set(many)
    assert [is_active(stack, u) for u in many].count(False) == 2
    assert all(is_active(stack, u) for u in held)
    [mail] = stack.graph.outbox[mails:]
    assert "5 deactivations held" in mail.subject and "release-held" in mail.body
    assert all(u in mail.body for u in held)

    # Another cycle with more leavers: held too (the window is full), but no second email.
    more = active_users(stack, 2)
    disable(stack, more)
    cycle = await run_cycle(stack)
    assert cycle.emails == 0 and all(is_active(stack, u) for u in more)
    held |= set(more)
    code, out = await cli(capsys, "held", "--json")
    assert code == 0 and {h["entra_id"] for h in json.loads(out)} == held
    code, out = await cli(capsys, "plan", "--json")  # the dry run shows them as held, not as deactivations
    planned = {p["entraId"]: p["action"] for p in json.loads(out)}
    assert code == 0 and {u: planned.get(u) for u in held} == {u: "held" for u in held}
    code, out = await cli(capsys, "plan")
    assert code == 0 and f"{len(held)} deactivations are held by the deletion threshold" in out

    # Release two by id: they are enqueued and deactivated, without asking the (full) threshold.
    released = sorted(held)[:2]
    code, out = await cli(capsys, "release-held", *[a for u in released for a in ("--entra-id", u.upper())])
    assert code == 0 and "2 deactivation(s) released" in out
    cycle = await run_cycle(stack)
    assert not any(is_active(stack, u) for u in released) and cycle.summary.outcome["deactivated"] == 2
    remaining = held - set(released)
    assert {h.entra_id for h in state().held_deactivations()} == remaining  # the allowance was used up

    # Reject the rest: they stay active, and a later reconcile does not deactivate or hold them again.
    code, out = await cli(capsys, "reject-held", "--all")
    assert code == 0 and f"{len(remaining)} deactivation(s) rejected" in out
    from shared.bootstrap import current_container

    results = await current_container().provisioner.reconcile(sorted(remaining))
    assert {r.operation.action for r in results} == {"skip"} and all(is_active(stack, u) for u in remaining)
    assert {h.status for h in state().held_deactivations()} == {"rejected"}
    code, out = await cli(capsys, "plan", "--json")
    assert {p["entraId"]: p["action"] for p in json.loads(out) if p["entraId"] in remaining} == {
        u: "kept (rejected)" for u in remaining}

    # An unknown id is refused with a clear error and changes nothing.
    code, _ = await cli(capsys, "release-held", "--entra-id", "00000000-0000-0000-0000-00000000abcd")
    assert code == 2 and {h.status for h in state().held_deactivations()} == {"rejected"}

    # A rejected user back in scope loses its mark; the next hold is news again and is emailed.
    back = sorted(remaining)[0]
    stack.tenant.update_user(back, accountEnabled=True)
    await run_cycle(stack)
    assert back not in {h.entra_id for h in state().held_deactivations()}
    late = active_users(stack, 1)
    disable(stack, late)
    mails = len(stack.graph.outbox)
    await run_cycle(stack)
    assert is_active(stack, late[0])
    [mail] = stack.graph.outbox[mails:]
    assert late[0] in mail.body

