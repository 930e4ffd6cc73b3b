"""provision_user as the host calls it: a message really received with the SDK, turned into the
func.ServiceBusMessage the worker builds, and the outcome read from the emulated org, the queue and
the state store."""
from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from azure.servicebus import ServiceBusMessage

from cli.local_stack import QUEUE
from shared.services.provision import MessageFailed

from .conftest import stack_fixture
from .new_hires import hire, upn_of
from .service_bus_io import reconcile_message

# Retries scheduled by these tests stay scheduled (minutes ahead) instead of reappearing mid-module;
# a Salesforce call unanswered for a second has timed out.
stack = stack_fixture(retry_base_seconds=600, settings={"SALESFORCE_TIMEOUT_SECONDS": "1"})


@pytest.fixture(scope="module", autouse=True)
def licences(stack):
    """Enough Salesforce licences for this module's hires: the demo org is deliberately short."""
    stack.org.set_license_pool("Salesforce", 100)


@pytest.fixture
def provision(functions):
    return functions["provision_user"]


def salesforce_user(stack, username: str) -> dict | None:
    found = [u for u in stack.org.users() if u["Username"] == username]
    assert len(found) <= 1, f"{len(found)} Salesforce users named {username}"
    return found[0] if found else None


def api_calls(stack) -> tuple[int, int]:
    """Requests served so far by the Graph and the Salesforce emulators."""
    return sum(stack.graph.calls.values()), stack.org.calls.total


async def deliver(queue, provision, message: ServiceBusMessage):
    """Send, receive and run the function; complete on success, abandon and re-raise on failure."""
    await queue.send(message)
    received, binding = await queue.receive_binding(message.message_id)
    try:
        await provision(binding)
    except Exception:
        await queue.abandon(received)
        raise
    await queue.complete(received)
    return binding


async def test_a_message_for_an_assigned_user_creates_the_mapped_salesforce_user(stack, queue, state, provision):
    user_id = hire(stack, "Ada", "Lovelace", role="Sales User")
    binding = await deliver(queue, provision, reconcile_message(user_id, "hire"))

    created = salesforce_user(stack, "ada.lovelace@contoso.com")  # Username: the UPN, lower-cased
    assert created is not None
    assert created["Alias"] == "alovelac"  # initial and surname, 8 characters, unique in the org
    assert created["CommunityNickname"] == "Ada.Lovelace"  # the UPN's local part, unique in the org
    assert created["ProfileId"] == stack.org.profile_id("Sales User")
    assert (created["FirstName"], created["LastName"], created["Email"]) == ("Ada", "Lovelace", upn_of(stack, user_id))
    assert created["LocaleSidKey"] == "en_GB"
    assert created["IsActive"] is True
    link = state.get_link(user_id)
    assert link is not None and link.salesforce_id[:15] == created["Id"][:15]
    assert state.get_failure(binding.message_id) is None
    assert stack.servicebus.message_count(QUEUE) == 0


async def test_the_same_user_again_makes_no_salesforce_write(stack, queue, provision):
    user_id = hire(stack, "Grace", "Hopper")
    first = await deliver(queue, provision, reconcile_message(user_id, "hire"))
    writes, users = stack.org.calls.writes, len(stack.org.users())

    await provision(first)  # the same message delivered again (say its lock was lost)
    await deliver(queue, provision, reconcile_message(user_id, "notification"))  # another message for the user

    assert stack.org.calls.writes == writes
    assert len(stack.org.users()) == users
    assert salesforce_user(stack, "grace.hopper@contoso.com") is not None


@pytest.mark.parametrize("body", [
    b"this is not JSON",
    json.dumps({"schemaVersion": 2, "entraId": str(uuid.uuid4()), "reason": "delta",
                "observedAt": "2025-01-01T00:00:00+00:00", "attempt": 0}).encode(),
], ids=["not-json", "wrong-schema-version"])
async def test_a_malformed_message_is_recorded_and_fails_again_without_work(stack, queue, state, provision, body):
    message_id = f"malformed-{uuid.uuid4()}"
    calls = api_calls(stack)
    with pytest.raises(MessageFailed):
        await deliver(queue, provision, ServiceBusMessage(body, message_id=message_id))
    failure = state.get_failure(message_id)
    assert failure is not None and failure.code == "InvalidMessage"

    received, again = await queue.receive_binding(message_id)  # the host delivers the abandoned message again
    assert (again.message_id, again.delivery_count) == (message_id, 2)
    with pytest.raises(MessageFailed):
        await provision(again)
    await queue.complete(received)
    assert api_calls(stack) == calls  # neither delivery read Graph or wrote Salesforce
    assert state.get_failure(message_id) == failure


async def test_a_permanent_salesforce_failure_raises_and_is_recorded(stack, queue, state, provision):
    user_id = hire(stack, "Alan", "Turing", mail=None)  # Salesforce requires Email
    message = reconcile_message(user_id, "hire")
    with pytest.raises(MessageFailed):
        await deliver(queue, provision, message)
    failure = state.get_failure(message.message_id)
    assert failure is not None
    assert (failure.code, failure.entra_id, failure.action) == ("REQUIRED_FIELD_MISSING", user_id, "create")
    assert salesforce_user(stack, "alan.turing@contoso.com") is None

    calls = api_calls(stack)
    received, again = await queue.receive_binding(message.message_id)
    with pytest.raises(MessageFailed):  # until max delivery count dead-letters it, without new work
        await provision(again)
    await queue.complete(received)
    assert api_calls(stack) == calls


async def test_a_transient_salesforce_fault_schedules_a_retry_and_completes(stack, queue, state, provision):
    user_id = hire(stack, "Katherine", "Johnson")
    seen, scheduled = len(stack.servicebus.messages_seen(QUEUE)), stack.servicebus.scheduled_count(QUEUE)
    stack.org.faults.fail_next("lock")  # UNABLE_TO_LOCK_ROW once
    message = reconcile_message(user_id, "hire")
    await deliver(queue, provision, message)  # returns normally: the message is completed

    assert stack.servicebus.scheduled_count(QUEUE) == scheduled + 1
    [retry] = stack.servicebus.messages_seen(QUEUE)[seen + 1:]  # after the test's own message
    body = json.loads(retry.body or b"")
    assert (body["entraId"], body["attempt"]) == (user_id, 1)
    assert retry.message_id == message.message_id + "/retry1"
    assert state.get_failure(message.message_id) is None
    assert salesforce_user(stack, "katherine.johnson@contoso.com") is None


async def until_salesforce_has(stack, username: str) -> dict:
    for _ in range(100):
        if (found := salesforce_user(stack, username)) is not None:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"no Salesforce user {username}")


async def test_a_create_that_timed_out_but_landed_is_linked_after_the_upn_changed(stack, queue, state, provision):
    user_id = hire(stack, "Hedy", "Lamarr")
    stack.org.faults.hang_seconds = 1.5  # answered, and applied, after the client gave up
    stack.org.faults.fail_next("hang", writes_only=True)
    await deliver(queue, provision, reconcile_message(user_id, "hire"))  # timed out: a retry is scheduled
    created = await until_salesforce_has(stack, "hedy.lamarr@contoso.com")
    assert state.get_link(user_id) is None and state.create_intents([user_id]) == {user_id: "hedy.lamarr@contoso.com"}

    stack.tenant.update_user(user_id, userPrincipalName="hedy.markey@contoso.com", mail="hedy.markey@contoso.com")
    await deliver(queue, provision, reconcile_message(user_id, "renamed"))

    assert salesforce_user(stack, "hedy.lamarr@contoso.com") is None  # renamed, not created a second time
    renamed = salesforce_user(stack, "hedy.markey@contoso.com")
    assert renamed is not None and renamed["Id"] == created["Id"] and renamed["IsActive"] is True
    assert state.get_link(user_id).salesforce_id == created["Id"] and state.create_intents([user_id]) == {}


async def test_a_user_made_by_a_crashed_worker_is_deactivated_when_out_of_scope(stack, queue, state, provision):
    user_id = hire(stack, "Claude", "Shannon")
    username = "claude.shannon@contoso.com"
    # what a worker killed after its create and before storing the link leaves behind
    state.put_create_intents({user_id: username})
    made = stack.org.create_user({"Username": username, "LastName": "Shannon", "Email": username, "Alias": "claude",
                                  "ProfileId": stack.org.profile_id("Standard User"), "TimeZoneSidKey": "America/Los_Angeles",
                                  "LocaleSidKey": "en_US", "EmailEncodingKey": "UTF-8", "LanguageLocaleKey": "en_US"})
    stack.tenant.update_user(user_id, accountEnabled=False)
    await deliver(queue, provision, reconcile_message(user_id, "disabled"))

    assert stack.org.get_user(made)["IsActive"] is False  # ours, so deactivated; an unlinked stranger would be left
    assert state.get_link(user_id).salesforce_id[:15] == made[:15] and state.create_intents([user_id]) == {}


async def test_a_username_taken_elsewhere_after_an_unanswered_create_is_looked_at_once_more(stack, queue, state, provision):
    user_id = hire(stack, "Barbara", "Liskov")
    username = "barbara.liskov@contoso.com"
    state.put_create_intents({user_id: username})  # an earlier create got no answer
    stack.org.registry.reserve(username)  # ... and the username is in fact another org's
    await deliver(queue, provision, reconcile_message(user_id, "hire"))  # in doubt: retried, not failed
    assert state.get_failure(reconcile_message(user_id, "hire").message_id) is None
    assert state.create_intents([user_id]) == {}

    message = reconcile_message(user_id, "hire-retry")
    with pytest.raises(MessageFailed):  # nothing of ours found again: now it is the other org's name
        await deliver(queue, provision, message)
    assert state.get_failure(message.message_id).code == "DUPLICATE_USERNAME"
    received, _ = await queue.receive_binding(message.message_id)  # the abandoned message, delivered again
    await queue.complete(received)



async def test_creates_that_failed_transiently_do_not_use_up_the_unique_candidates(stack, queue, state, provision):
    user_id = hire(stack, "Radia", "Perlman")
    for attempt in range(4):  # more failed attempts than CommunityNickname has candidates (3)
        stack.org.faults.fail_next("lock", writes_only=True)
        await deliver(queue, provision, reconcile_message(user_id, f"attempt-{attempt}"))  # retried, not failed
    message = reconcile_message(user_id, "attempt-5")
    await deliver(queue, provision, message)
    created = salesforce_user(stack, "radia.perlman@contoso.com")
    assert created is not None and state.get_failure(message.message_id) is None
    assert created["CommunityNickname"] == "Radia.Perlman"  # its first candidate, still free
