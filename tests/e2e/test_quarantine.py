"""Quarantine end to end: Entra changes → detect timer → Service Bus stand-in → provision, against a
Salesforce emulator that fails every call, then rejects the credentials, then recovers. Backoffs are
configured in tenths of a second, so the probes run within the test without sleeping; where a test
must show that something waits, it configures minutes and inspects the scheduled messages instead."""
from __future__ import annotations

import asyncio
import json
from functools import partial
from typing import AsyncIterator, Callable

import pytest_asyncio

from cli.__main__ import main as cli_main
from cli.demo import run_cycle as demo_cycle
from cli.local_stack import QUEUE, LocalStack, app_settings, environment, local_stack
from emulators.functions_host import QueueTriggerHost, registered_functions

from .untouched_users import untouched_users

run_cycle = partial(demo_cycle, idle_seconds=0.4)
FAST = {
    "QUARANTINE_MIN_OPERATIONS": "4",
    "QUARANTINE_FAILURE_RATIO": "0.4",
    "QUARANTINE_BACKOFF_BASE_SECONDS": "0.3",
    "QUARANTINE_BACKOFF_MAX_SECONDS": "0.6",
}
MIN_OPERATIONS = int(FAST["QUARANTINE_MIN_OPERATIONS"])
UPPER_BOUND_SECONDS = 60.0  # a hang guard, not a timing: the steps take a few seconds


@pytest_asyncio.fixture(scope="module")
async def stack() -> AsyncIterator[LocalStack]:
    with local_stack(users=40, retry_base_seconds=0.2) as running:
        async with app_settings(running, FAST):
            await run_cycle(running)
            yield running


def container():
    from shared.bootstrap import current_container

    return current_container()


def functions():
    import function_app

    return registered_functions(function_app.app)


_USED: set[str] = set()


def rename(stack: LocalStack, count: int, surname: str) -> list[str]:
    """Give `count` provisioned users no earlier step touched a new surname; their ids."""
    chosen = untouched_users(stack, container().state, count, _USED)
    for i, user_id in enumerate(chosen):
        stack.tenant.update_user(user_id, surname=f"{surname}{i}")
    return chosen


def last_name(stack: LocalStack, user_id: str) -> str:
    return stack.org.get_user(container().state.get_link(user_id).salesforce_id)["LastName"]


async def detect() -> None:
    from azure.functions.timer import TimerRequest

    await functions()["detect_changes"](TimerRequest(past_due=False))


async def provision_until(stack: LocalStack, done: Callable[[], bool] | None = None, idle_seconds: float | None = None) -> None:
    """Run the queue trigger until `done()` holds after a settled message (or the queue is idle)."""
    host = QueueTriggerHost(stack.env["ServiceBusConnection"], QUEUE, functions()["provision_user"],
                            max_concurrent_calls=16,
                            on_invocation=lambda _: host.stop() if done is not None and done() else None)
    await asyncio.wait_for(host.run(idle_seconds=idle_seconds, poll_seconds=0.1), UPPER_BOUND_SECONDS)


def quarantine_mails(stack: LocalStack, since: int) -> list[str]:
    return [m.subject for m in stack.graph.outbox[since:] if "quarantine" in m.subject]


def dead_letters(stack: LocalStack) -> int:
    return len(stack.servicebus.messages_seen(QUEUE, dead_letter=True))


async def test_most_calls_failing_quarantines_probes_back_off_and_a_success_lifts_it(stack: LocalStack):
    renamed = rename(stack, 6, "Outage")
    container().state.clear_outcomes()  # the first sync's successes would dilute the window for a while
    mails, dead, calls = len(stack.graph.outbox), dead_letters(stack), stack.org.calls.total
    seen = len(stack.servicebus.messages_seen(QUEUE))
    stack.org.faults.fail_rate("unavailable", 1.0)
    await detect()

    # Every call fails: each failed batch query is one failed operation (however many users it carried),
    # so quarantined after QUARANTINE_MIN_OPERATIONS of them, then one probe at a time, each one failing.
    state = container().state
    await provision_until(stack, lambda: (s := state.get_quarantine()) is not None and s.probes >= 2)
    status = state.get_quarantine()
    assert status is not None and status.active
    assert (status.reason, status.error_code) == ("failure_ratio", "SERVER_UNAVAILABLE")
    assert stack.org.calls.total - calls == MIN_OPERATIONS + status.probes  # then only the probes
    assert quarantine_mails(stack, mails) == ["Salesforce provisioning quarantined: most Salesforce operations are failing"]
    assert f"{MIN_OPERATIONS} of {MIN_OPERATIONS} Salesforce operations failed" in stack.graph.outbox[mails].body
    assert dead_letters(stack) == dead
    deferred = [json.loads(m.body) for m in stack.servicebus.messages_seen(QUEUE)[seen:]
                if "/deferred" in (m.message_id or "")]
    # deferring never uses up attempts: only the retries before the quarantine did
    assert deferred and max(d["attempt"] for d in deferred) < MIN_OPERATIONS
    assert {d["entraId"] for d in deferred} == set(renamed)
    assert all(not last_name(stack, u).startswith("Outage") for u in renamed)

    # Salesforce answers again but rejects the credentials once: the reason changes (a second email),
    # then the next probe succeeds, the quarantine lifts (a third email) and every deferred user arrives.
    stack.org.faults.clear()
    stack.org.expire_session(2)  # the probe's call and its retry after re-authenticating
    await provision_until(stack, lambda: state.get_quarantine() is None
                          and all(last_name(stack, u).startswith("Outage") for u in renamed))
    assert quarantine_mails(stack, mails) == [
        "Salesforce provisioning quarantined: most Salesforce operations are failing",
        "Salesforce provisioning quarantined: Salesforce rejected the app's credentials",
        "Salesforce provisioning: quarantine lifted",
    ]
    assert "a probe succeeded" in stack.graph.outbox[-1].body
    assert dead_letters(stack) == dead  # nothing was dead-lettered because of the quarantine
    assert state.record_outcomes(0, 0, 900) == (len(renamed) - 1, 0)  # the window restarted when it lifted


async def test_rejected_credentials_quarantine_at_once_new_changes_wait_and_the_admin_clears_it(stack: LocalStack, capsys):
    # Minutes between probes here, so that what waits can be seen waiting.
    with environment({"QUARANTINE_BACKOFF_BASE_SECONDS": "600", "QUARANTINE_BACKOFF_MAX_SECONDS": "3600"}):
        try:
            [first] = rename(stack, 1, "Locked")
            mails, dead, calls = len(stack.graph.outbox), dead_letters(stack), stack.org.calls.total
            soon = stack.servicebus.scheduled_count(QUEUE, within_seconds=300)
            scheduled = stack.servicebus.scheduled_count(QUEUE)
            stack.org.expire_session(2)
            await detect()
            await provision_until(stack, idle_seconds=0.5)

            # One operation is far below QUARANTINE_MIN_OPERATIONS, but rejected credentials quarantine at once.
            status = container().state.get_quarantine()
            assert status is not None and (status.reason, status.error_code) == ("auth", "INVALID_SESSION_ID")
            assert stack.org.calls.total - calls == 2  # the call and its retry after re-authenticating
            assert quarantine_mails(stack, mails) == [
                "Salesforce provisioning quarantined: Salesforce rejected the app's credentials"]

            # The detect timer still reads Entra, but schedules its messages for after the next probe.
            later = rename(stack, 1, "Later")
            await detect()
            assert stack.servicebus.scheduled_count(QUEUE) == scheduled + 2  # the deferred user and the new one
            assert stack.servicebus.scheduled_count(QUEUE, within_seconds=300) == soon
            assert stack.servicebus.active_count(QUEUE) == 0 and dead_letters(stack) == dead

            code = await asyncio.to_thread(cli_main, ["quarantine"])
            assert code == 0 and "QUARANTINED since" in capsys.readouterr().out
            code = await asyncio.to_thread(cli_main, ["quarantine", "--clear"])
            assert code == 0 and "quarantine lifted" in capsys.readouterr().out
            assert container().state.get_quarantine() is None
            assert quarantine_mails(stack, mails)[-1] == "Salesforce provisioning: quarantine lifted"
            assert "an admin cleared it" in stack.graph.outbox[-1].body
            code = await asyncio.to_thread(cli_main, ["quarantine", "--json"])
            assert code == 0 and json.loads(capsys.readouterr().out) is None

            # Lifted: the next message for a user is provisioned again (the waiting ones follow in 10 minutes).
            for user_id in (first, *later):
                stack.tenant.update_user(user_id, surname="Cleared")
            await detect()
            await provision_until(stack, idle_seconds=0.5)
            assert last_name(stack, first) == last_name(stack, later[0]) == "Cleared"
        finally:
            await container().aclose()

