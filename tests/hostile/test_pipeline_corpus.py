"""The hostile queue, Entra-attribute and Salesforce-response corpus (tests/corpus/{queue,entra,
salesforce}/*.json), run through the real provision_user and notify_failures functions on one local
stack: messages sent and received with the real SDK over AMQP, users read from the Graph emulator,
written to the Salesforce emulator over HTTPS.

Each message is delivered the way the host delivers it (abandoned when the function raises) until it
is completed or the queue's max delivery count moves it to the dead-letter queue, whose digest email
must then carry the original reason. Anything the function raises other than MessageFailed is a crash
and fails the case. Every case also checks that nothing was half-written: no Salesforce write, no link
and no failure record left behind unless the case expects it."""
from __future__ import annotations

import logging
import uuid
from typing import Any, AsyncIterator

import pytest
import pytest_asyncio
from azure.servicebus import ServiceBusMessage
from azure.servicebus.amqp import AmqpAnnotatedMessage

from cli.local_stack import QUEUE, LocalStack, app_settings, local_stack
from emulators.functions_host import registered_functions, to_functions_message
from emulators.salesforce.knobs import RawResponse
from shared.adapters.state_sqlite import SqliteStateStore
from shared.core.messages import ReconcileMessage, failure_key
from shared.services.provision import MessageFailed
from tests.functions.service_bus_io import QueueSession, reconcile_message

from .corpus import body_bytes, cases, fill

LICENCES = 500  # the demo org is deliberately short of licences; these cases are not about that
REQUIRED_DEFAULTS = {"Alias": "decoy", "TimeZoneSidKey": "GMT", "LocaleSidKey": "en_US",
                     "EmailEncodingKey": "UTF-8", "LanguageLocaleKey": "en_US"}


@pytest_asyncio.fixture(scope="module")
async def stack() -> AsyncIterator[LocalStack]:
    # Retries are scheduled ten minutes ahead, so none comes back while the module runs.
    with local_stack(users=40, retry_base_seconds=600) as running:
        running.org.set_license_pool("Salesforce", LICENCES)
        async with app_settings(running):
            yield running


@pytest.fixture(scope="module")
def functions(stack) -> dict[str, Any]:
    import function_app

    return registered_functions(function_app.app)


@pytest_asyncio.fixture(scope="module")
async def queue(stack) -> AsyncIterator[QueueSession]:
    async with QueueSession(stack) as session:
        yield session


@pytest_asyncio.fixture(scope="module")
async def dead_letters(stack) -> AsyncIterator[QueueSession]:
    async with QueueSession(stack, dead_letter=True) as session:
        yield session


@pytest_asyncio.fixture(scope="module")
async def warm(stack, functions, queue) -> str:
    """One ordinary user provisioned first, so the profile and app-role caches are filled and a case's
    raw Salesforce answers meet the calls the case is about. Its id: an in-sync user for queue cases."""
    user_id = hire(stack, {"userPrincipalName": "warm.up@{domain}", "givenName": "Warm", "surname": "Up"})
    assert await deliver(stack, functions, queue, reconcile_message(user_id, "warm-up")) == "completed"
    return user_id


@pytest.fixture
def state(stack) -> SqliteStateStore:
    with SqliteStateStore(stack.env["STATE_SQLITE_PATH"]) as store:
        yield store


@pytest.fixture(autouse=True)
def clean_faults(stack):
    yield
    stack.org.faults.clear()


def hire(stack: LocalStack, attributes: dict[str, Any], role: str = "Standard User") -> str:
    """Add the user exactly as given (a None value is stored as Graph's null; mail defaults to the
    UPN) and assign it `role` of the Salesforce app."""
    person = fill(attributes, {"domain": stack.tenant.domain})
    person.setdefault("displayName", "Corpus User")
    person.setdefault("mail", person["userPrincipalName"])
    user_id = stack.tenant.add_user(**person)
    stack.tenant.assign(stack.demo.service_principal_id, user_id, stack.demo.app_role_ids[role])
    return user_id


async def deliver(stack: LocalStack, functions, queue: QueueSession, message: ServiceBusMessage | AmqpAnnotatedMessage) -> str:
    """Send the message and deliver it as the host does until it is completed ("completed") or
    dead-lettered by the max delivery count ("dead-lettered"). A crash fails the test."""
    dead = stack.servicebus.dead_letter_count(QUEUE)
    await queue.send(message)
    message_id = getattr(message, "message_id", None)  # a raw AMQP message may have none
    while True:
        received, binding = await queue.receive_binding(message_id)
        try:
            await functions["provision_user"](binding)
        except MessageFailed:
            await queue.abandon(received)
            if stack.servicebus.dead_letter_count(QUEUE) > dead:
                return "dead-lettered"
            continue
        except Exception as exc:  # the worker would log an unhandled exception: a defect
            await queue.complete(received)  # out of the way of the next cases
            pytest.fail(f"provision_user crashed on message {message_id}: {exc!r}")
        await queue.complete(received)
        return "completed"


async def digest_of_dead_letter(stack: LocalStack, functions, dead_letters: QueueSession, message_id: str | None) -> str:
    """Run notify_failures on the dead-lettered message as its trigger would; the digest email's body."""
    outbox = len(stack.graph.outbox)
    [received] = await dead_letters.receive(1)
    while received.message_id != message_id:  # left behind by an earlier case that failed midway
        await dead_letters.complete(received)
        [received] = await dead_letters.receive(1)
    await functions["notify_failures"]([to_functions_message(received)])
    await dead_letters.complete(received)
    [mail] = stack.graph.outbox[outbox:]
    return mail.body


def snapshot(stack: LocalStack) -> dict[str, Any]:
    return {"writes": stack.org.calls.writes, "calls": stack.org.calls.total, "users": stack.org.users(),
            "scheduled": stack.servicebus.scheduled_count(QUEUE), "queries": len(stack.org.query_log)}


def salesforce_users(stack: LocalStack, username: str) -> list[dict[str, Any]]:
    return [u for u in stack.org.users() if u["Username"].casefold() == username.casefold()]


WRITES = ("created", "updated")  # outcomes that change the org


async def check_outcome(stack, functions, dead_letters, state, caplog, *, expect: dict[str, Any], outcome: str,
                        message_id: str, entra_id: str | None, before: dict[str, Any], write_requests: int = 0,
                        sent_id: str | None = "") -> None:
    """The assertions every case shares: how the message was settled, what was recorded and written.
    `message_id` is what the failure is recorded under; `sent_id` the id the message carried, when it
    differs (a message sent without one). `before` is the snapshot taken just before the message was
    sent (its "link": the user's link then)."""
    assert outcome == ("dead-lettered" if expect["outcome"] == "dead-lettered" else "completed")
    if "log" in expect:
        assert expect["log"] in caplog.text
    for text in expect.get("log_excludes", []):
        assert text not in caplog.text, "the log carries input it must not (a name, an email, raw payload)"
    link = state.get_link(entra_id) if entra_id else None
    if expect["outcome"] == "dead-lettered":
        failure = state.get_failure(message_id)
        assert failure is not None, "dead-lettered without a recorded reason"
        assert failure.code == expect["code"]
        for fragment in expect.get("reason_contains", []):
            assert fragment in failure.description
        digest = await digest_of_dead_letter(stack, functions, dead_letters, message_id if sent_id == "" else sent_id)
        assert expect["code"] in digest and message_id in digest
        for text in expect.get("reason_excludes", []):  # a sender's text never reaches the record or the email
            assert text not in failure.description and text not in digest
        assert state.get_failure(message_id) is None  # reported once, then forgotten
    else:
        assert state.get_failure(message_id) is None
    if expect["outcome"] not in WRITES:
        # write_requests: writes a raw answer stood in for (the emulator counts them; the org never saw them)
        assert stack.org.calls.writes - before["writes"] == write_requests, "a Salesforce write happened"
        assert stack.org.users() == before["users"], "the org changed"
        if expect["outcome"] == "no-write":  # a noop may record the mapped state it found in sync
            assert (link and link.salesforce_id) == (before.get("link") and before["link"].salesforce_id)
        else:
            assert link == before.get("link"), "the user's link changed though nothing was written"
    if "salesforce_calls" in expect:
        assert stack.org.calls.total - before["calls"] == expect["salesforce_calls"]
    scheduled = stack.servicebus.scheduled_count(QUEUE) - before["scheduled"]
    assert scheduled == (1 if expect["outcome"] == "retry-scheduled" else 0)
    assert stack.servicebus.message_count(QUEUE) == before["scheduled"] + scheduled


# ---- queue messages --------------------------------------------------------------------------------
@pytest.mark.parametrize("case", cases("queue"))
async def test_queue_case(case, stack, functions, queue, dead_letters, state, warm, caplog) -> None:
    case = fill(case, {"user": warm, "uuid": str(uuid.uuid4())})
    message_id = f"corpus-{uuid.uuid4()}"
    before = snapshot(stack)
    message = ServiceBusMessage(body_bytes(case["body"]), message_id=message_id, content_type="application/json")
    if case["expect"]["outcome"] == "reported":  # dead-lettered by someone else: only the digest handles it
        await queue.send(message)
        received, _ = await queue.receive_binding(message_id)
        await queue.dead_letter(received, case["dead_letter"]["reason"], case["dead_letter"]["description"])
        digest = await digest_of_dead_letter(stack, functions, dead_letters, message_id)
        assert all(text in digest for text in case["expect"]["digest_contains"])
        assert not any(text in digest for text in case["expect"]["digest_excludes"])
        assert stack.org.calls.total == before["calls"] and stack.org.users() == before["users"]
        return
    sent_id: str | None = message_id
    if case.get("without_message_id"):  # as a producer other than the Python SDK may send it
        message, sent_id = AmqpAnnotatedMessage(data_body=body_bytes(case["body"])), None
        message_id = failure_key(None, body_bytes(case["body"]))
    with caplog.at_level(logging.INFO):
        outcome = await deliver(stack, functions, queue, message)
        if "followed_by" in case:  # the next message, before the first one's failure has been reported
            follower = body_bytes(case["followed_by"]["body"])
            sent = AmqpAnnotatedMessage(data_body=follower) if case.get("without_message_id") else \
                ServiceBusMessage(follower, message_id=f"corpus-{uuid.uuid4()}")
            assert await deliver(stack, functions, queue, sent) == case["followed_by"]["outcome"]
            before = {**before, "writes": stack.org.calls.writes, "calls": stack.org.calls.total}
        await check_outcome(stack, functions, dead_letters, state, caplog, expect=case["expect"], outcome=outcome,
                            message_id=message_id, entra_id=None, before=before, sent_id=sent_id)


# ---- Entra attribute values -------------------------------------------------------------------------
@pytest.mark.parametrize("case", cases("entra"))
async def test_entra_case(case, stack, functions, queue, dead_letters, state, warm, caplog) -> None:
    domain = stack.tenant.domain
    case = fill(case, {"domain": domain})
    expect = case["expect"]
    for decoy in case.get("decoys", []):
        stack.org.create_user({**REQUIRED_DEFAULTS, "ProfileId": stack.org.profile_id("Standard User"),
                               "Email": "decoy@example.com", "LastName": "Decoy", **decoy})
    user_id = hire(stack, case["user"], case.get("role", "Standard User"))
    if "update" in case:  # an existing, provisioned user whose Entra attributes then turn hostile
        first = reconcile_message(user_id, f"corpus-{uuid.uuid4()}")
        assert await deliver(stack, functions, queue, first) == "completed"
        stack.tenant.update_user(user_id, **case["update"])
    message = reconcile_message(user_id, f"corpus-{uuid.uuid4()}")
    before = {**snapshot(stack), "link": state.get_link(user_id)}
    with caplog.at_level(logging.INFO):
        outcome = await deliver(stack, functions, queue, message)
        await check_outcome(stack, functions, dead_letters, state, caplog, expect=expect, outcome=outcome,
                            message_id=message.message_id, entra_id=user_id, before=before)
    if expect["outcome"] not in WRITES:
        return
    upn = {**case["user"], **case.get("update", {})}["userPrincipalName"]
    found = salesforce_users(stack, expect.get("username", upn.lower()))
    assert len(found) == 1, f"{len(found)} Salesforce users named {upn.lower()!r}"
    [written] = found
    for name, value in expect.get("salesforce", {}).items():
        assert written.get(name) == value, f"{name}: {written.get(name)!r} != {value!r}"
    link = state.get_link(user_id)
    assert link is not None and link.salesforce_id[:15] == written["Id"][:15]
    # No injection: every User query of this case returned at most the user it was about.
    for text, ids in list(stack.org.query_log)[before["queries"]:]:
        if " FROM User " in text:
            assert {i[:15] for i in ids} <= {written["Id"][:15]}, f"query matched other users: {text}"


# ---- hostile Salesforce responses -------------------------------------------------------------------
@pytest.mark.parametrize("case", cases("salesforce"))
async def test_salesforce_case(case, request, stack, functions, queue, dead_letters, state, warm, caplog) -> None:
    name = request.node.callspec.id.replace("-", "")[:20]
    case = fill(case, {"domain": stack.tenant.domain})
    expect = case["expect"]
    user_id = hire(stack, {"userPrincipalName": f"sf.{name}@{stack.tenant.domain}", "givenName": "Sf", "surname": name})
    username = f"sf.{name}@{stack.tenant.domain}".lower()
    for raw in case["raw"]:
        stack.org.faults.respond_raw(
            RawResponse(raw["status"], body_bytes(raw.get("body")), raw.get("content_type", "application/json")),
            kind=raw.get("kind"), count=raw.get("count", 1))
    message = ReconcileMessage.new(user_id, "delta", f"corpus-{uuid.uuid4()}")
    for _ in range(case.get("attempt", 0)):  # a message that already went through that many retries
        message = message.retry()
    message = ServiceBusMessage(message.to_json(), message_id=message.message_id)
    before = snapshot(stack)
    with caplog.at_level(logging.INFO):
        outcome = await deliver(stack, functions, queue, message)
        await check_outcome(stack, functions, dead_letters, state, caplog, expect=expect, outcome=outcome,
                            message_id=message.message_id, entra_id=user_id, before=before,
                            write_requests=sum(r.get("count", 1) for r in case["raw"] if r["kind"].startswith("composite")))
    assert stack.org.faults.pending_raw() == 0, "a raw answer was never asked for"
    if expect["outcome"] == "created":
        assert len(salesforce_users(stack, username)) == 1
        return
    # The org is healthy again: the next message for the user provisions it, exactly once.
    assert await deliver(stack, functions, queue, reconcile_message(user_id, f"corpus-again-{uuid.uuid4()}")) == "completed"
    assert len(salesforce_users(stack, username)) == 1
    assert state.get_link(user_id) is not None
