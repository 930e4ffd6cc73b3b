"""Safety drills on the local stack, through the real function handlers: what an identity team fears
most from a provisioning engine is a mass deactivation it did not ask for.

- Everyone unassigned at once: held by the deletion threshold, reported by exactly one email however
  many cycles and notifications touch the held users, applied only by `release-held`, kept by
  `reject-held`.
- A Graph outage during detection (503, 429, connection refused, or the app's assignment list
  answered empty while the users' own reads say otherwise): the detect run fails, nothing is enqueued
  or written, the delta checkpoint and the assignment snapshot stay where they were; the next healthy
  cycle converges.
- Empty per-user assignment lists as well (a replica lagging on both): that looks like everyone
  leaving and is held, then the holds dissolve when Graph tells the truth again, without anything
  beyond the threshold ever being deactivated.

Thresholds: 20% of the active users for the first drill, 5 deactivations per window for the others.
tests/e2e/test_deletion_threshold.py covers the threshold's own steps (below and above it, release by
id, a rejected user back in scope)."""
from __future__ import annotations

import asyncio
import json
import socket
from contextlib import contextmanager
from functools import partial
from typing import AsyncIterator, Iterator

import azure.functions as func
import pytest
import pytest_asyncio
from azure.functions.timer import TimerRequest

from cli.__main__ import main as cli_main
from cli.demo import drain_queue, run_cycle as demo_cycle
from cli.local_stack import QUEUE, LocalStack, environment, local_stack
from emulators.functions_host import registered_functions
from shared.core.errors import TransientError
from shared.services.detect_changes import DELTA_CURSOR

THRESHOLD = 5
run_cycle = partial(demo_cycle, idle_seconds=0.4)
ASSIGNMENT_LISTS = ("servicePrincipals.appRoleAssignedTo", "users.appRoleAssignments")


@contextmanager
def running_stack(seed: int, threshold: int = THRESHOLD, percent: int = 0) -> Iterator[LocalStack]:
    with local_stack(users=40, seed=seed, retry_base_seconds=0.2) as stack:
        limits = {"DEACTIVATION_THRESHOLD": str(threshold), "DEACTIVATION_THRESHOLD_PERCENT": str(percent)}
        with environment({**stack.env, **limits}):
            yield stack


def container():
    from shared.bootstrap import current_container

    return current_container()


def functions():
    import function_app

    return registered_functions(function_app.app)


def active_linked(stack: LocalStack) -> set[str]:
    """Entra users whose linked Salesforce user is active."""
    state = container().state
    return {u for u in stack.tenant.user_ids
            if (link := state.get_link(u)) and stack.org.get_user(link.salesforce_id)["IsActive"]}


def org_users(stack: LocalStack) -> dict[str, dict]:
    return {u["Id"]: dict(u) for u in stack.org.users()}


def unchanged(before: dict[str, dict], after: dict[str, dict]) -> bool:
    """Every Salesforce user of `before` is still there with the same fields."""
    return all(after.get(user_id) == fields for user_id, fields in before.items())


def hold_notices(stack: LocalStack) -> list:
    return [mail for mail in stack.graph.outbox if "held for your decision" in mail.subject]


def held_ids() -> set[str]:
    return {h.entra_id for h in container().state.held_deactivations() if h.status == "held"}


async def notify(stack: LocalStack, user_ids: set[str]) -> None:
    """Graph change notifications for these users, through the webhook function."""
    body = {"value": [{"clientState": stack.env["GRAPH_CLIENT_STATE"], "changeType": "updated",
                       "resource": f"Users/{u}", "resourceData": {"id": u}} for u in sorted(user_ids)]}
    response = await functions()["graph_notifications"](
        func.HttpRequest("POST", "https://x/api/graph/notifications", body=json.dumps(body).encode()))
    assert response.status_code == 202


async def cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = await asyncio.to_thread(cli_main, list(argv))  # the CLI runs its own event loop
    return code, capsys.readouterr().out


# ---- everyone unassigned -------------------------------------------------------------------------

async def test_everyone_unassigned_is_held_reported_once_and_applied_only_when_released(capsys):
    """With the percentage limit (20% of the active users) rather than a count."""
    with running_stack(seed=11, threshold=0, percent=20) as stack:
        try:
            await run_cycle(stack)
            before = active_linked(stack)
            allowed = len(before) * 20 // 100
            assert allowed >= 2
            mails = len(stack.graph.outbox)  # before: the first cycle's failure digest
            for assignment in stack.tenant.assigned_to(stack.demo.service_principal_id):
                stack.tenant.unassign(assignment.id)

            first = await run_cycle(stack)
            assert first.summary.outcome["deactivated"] == allowed and first.dead_lettered == 0
            held = held_ids()
            assert len(held) == len(before) - allowed and active_linked(stack) == held
            [notice] = stack.graph.outbox[mails:]
            assert "held for your decision" in notice.subject and "release-held" in notice.body

            # Another cycle, with Graph notifying about every held user: re-decided, still held, no new email.
            await notify(stack, held)
            again = await run_cycle(stack)
            assert again.summary.outcome["skipped"] >= len(held) and again.salesforce_writes == 0
            assert held_ids() == held and active_linked(stack) == held
            assert len(stack.graph.outbox) == mails + 1

            # Rejecting keeps users active through later reconciles; releasing applies the rest.
            kept = set(sorted(held)[:2])
            code, _ = await cli(capsys, "reject-held", *[a for u in sorted(kept) for a in ("--entra-id", u)])
            assert code == 0
            code, out = await cli(capsys, "release-held", "--all")
            assert code == 0 and f"{len(held) - len(kept)} deactivation(s) released" in out
            await notify(stack, kept)
            released = await run_cycle(stack)
            assert released.summary.outcome["deactivated"] == len(held) - len(kept)
            assert active_linked(stack) == kept and held_ids() == set()
            code, out = await cli(capsys, "held", "--json")
            assert {h["entra_id"] for h in json.loads(out)} == kept  # as rejected
            assert len(stack.graph.outbox) == mails + 1
        finally:
            await container().aclose()


# ---- Graph outages -------------------------------------------------------------------------------

@pytest_asyncio.fixture(scope="module")
async def stack() -> AsyncIterator[LocalStack]:
    with running_stack(seed=7) as running:
        try:
            await run_cycle(running)
            yield running
        finally:
            await container().aclose()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def graph_outage(stack: LocalStack, kind: str) -> Iterator[None]:
    """Every Graph request fails: 503 or 429 (with Retry-After: 1 s, which the client honours three
    times before giving up), or nothing listens at the Graph address at all; or ("empty") Graph answers
    the app's assignment list with no items while each user's own read still tells the truth."""
    if kind == "refused":
        with environment({"GRAPH_BASE_URL": f"http://127.0.0.1:{closed_port()}/v1.0"}):
            yield
        return
    if kind == "empty":
        stack.graph.faults.add_empty("servicePrincipals.appRoleAssignedTo")
    else:
        stack.graph.faults.add("*", int(kind), retry_after=1)
    try:
        yield
    finally:
        stack.graph.faults.clear()


def pending_changes(stack: LocalStack) -> dict[str, str]:
    """A renamed user, a directly assigned user unassigned, a new user assigned: user id → change."""
    state = container().state
    sp = stack.demo.service_principal_id

    def sole_direct(a) -> bool:  # the user's only assignment to the app, so removing it ends their access
        if a.principal_type != "User":
            return False
        return [x for x in stack.tenant.user_app_role_assignments(a.principal_id) if x.resource_id == sp] == [a]

    direct = sorted((a for a in stack.tenant.assigned_to(sp) if sole_direct(a) and state.get_link(a.principal_id)
                     and stack.org.get_user(state.get_link(a.principal_id).salesforce_id)["IsActive"]),
                    key=lambda a: a.principal_id)
    renamed, leaver = direct[0].principal_id, direct[1].principal_id
    stack.tenant.update_user(renamed, givenName="Renamedwhiledown")
    stack.tenant.unassign(direct[1].id)
    upn = "hired.during.outage@contoso.com"
    hire = stack.tenant.add_user(userPrincipalName=upn, displayName="Hired Outage", givenName="Hired",
                                 surname="Outage", mail=upn, accountEnabled=True)
    stack.tenant.assign(sp, hire, stack.demo.app_role_ids["Chatter Free User"])
    return {renamed: "renamed", leaver: "unassigned", hire: "hired"}


async def test_a_graph_outage_during_detection_changes_nothing_and_the_next_cycle_converges(stack):
    state = container().state
    changes = pending_changes(stack)
    checkpoint, snapshot = state.get_cursor(DELTA_CURSOR), state.assignment_snapshot()
    writes, sent, mails = stack.org.calls.writes, len(stack.servicebus.messages_seen(QUEUE)), len(stack.graph.outbox)

    for kind in ("503", "429", "refused", "empty"):
        with graph_outage(stack, kind):
            with pytest.raises(TransientError):
                await functions()["detect_changes"](TimerRequest(past_due=False))
            if kind == "refused":
                await container().aclose()  # the container built for the unreachable address
        assert stack.org.calls.writes == writes and len(stack.graph.outbox) == mails, kind
        assert len(stack.servicebus.messages_seen(QUEUE)) == sent, kind  # nothing enqueued
        assert state.get_cursor(DELTA_CURSOR) == checkpoint and state.assignment_snapshot() == snapshot, kind

    healed = await run_cycle(stack)
    outcome = healed.summary.outcome
    assert (outcome["created"], outcome["deactivated"], outcome["updated"]) == (1, 1, 1) and healed.dead_lettered == 0
    renamed = next(u for u, c in changes.items() if c == "renamed")
    assert stack.org.get_user(state.get_link(renamed).salesforce_id)["FirstName"] == "Renamedwhiledown"
    assert state.get_cursor(DELTA_CURSOR) != checkpoint
    assert (await run_cycle(stack)).salesforce_writes == 0


async def test_empty_assignment_lists_after_an_outage_are_held_and_dissolve_when_graph_recovers(stack):
    before, notices = active_linked(stack), len(hold_notices(stack))
    for route in ASSIGNMENT_LISTS:
        stack.graph.faults.add_empty(route)
    try:
        first = await run_cycle(stack)
        held = held_ids()
        assert first.summary.outcome["deactivated"] <= THRESHOLD
        assert held and active_linked(stack) >= held and len(before - active_linked(stack)) <= THRESHOLD
        assert len(hold_notices(stack)) == notices + 1
    finally:
        stack.graph.faults.clear()

    # Everyone is assigned again: holds dropped, the deactivated ones back (and a user parked for want
    # of a licence may be created now that the drills freed some).
    recovered = await run_cycle(stack)
    assert held_ids() == set() and before <= active_linked(stack)
    # (Users whose creates fail for good fail again, re-reconciled after the recovery: a failure digest.)
    assert recovered.summary.outcome["deactivated"] == 0 and len(hold_notices(stack)) == notices + 1


async def test_a_graph_outage_while_provisioning_waits_on_the_retry_policy_not_the_hosts_redeliveries(stack):
    """A worker that has just started reads the app's roles first; Graph failing then must fail each
    user of the batch (retried on the message's own backoff), not the invocation: an invocation that
    raises is redelivered at once by the host and dead-lettered after 10 deliveries without a reason."""
    state = container().state
    user = next(u for u in sorted(active_linked(stack)) if stack.tenant.find_user(u).get("givenName"))
    stack.tenant.update_user(user, givenName="Renamedduringoutage")
    with environment({"LEASE_SECONDS": "119"}):  # other settings: another container, a fresh worker
        try:
            await functions()["detect_changes"](TimerRequest(past_due=False))
            stack.graph.faults.add("servicePrincipals.get", 500, times=2)
            invocations = await drain_queue(stack, idle_seconds=0.4)
        finally:
            stack.graph.faults.clear()
            await container().aclose()
    assert len(invocations) >= 3 and {i.outcome for i in invocations} == {"completed"}
    assert max(i.delivery_count for i in invocations) == 1  # retries are new messages, not redeliveries
    assert stack.org.get_user(state.get_link(user).salesforce_id)["FirstName"] == "Renamedduringoutage"
