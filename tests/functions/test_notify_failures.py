"""notify_failures as the host calls it: a batch (cardinality many) of messages really dead-lettered
on the stack's queue, received from its dead-letter queue with the SDK; the digest is read from the
Graph emulator's outbox and the failure records from the state store."""
from __future__ import annotations

import uuid

import pytest
import pytest_asyncio
from azure.servicebus import ServiceBusMessage

from cli.local_stack import QUEUE
from emulators.functions_host import QueueTriggerHost, to_functions_message
from shared.core.errors import ProvisioningError

from .new_hires import hire
from .service_bus_io import QueueSession, reconcile_message

IDLE_SECONDS = 0.5  # how long an empty queue ends a host run; no assertion depends on it


@pytest_asyncio.fixture(scope="module")
async def dead_letters(stack):
    async with QueueSession(stack, dead_letter=True) as session:
        yield session


@pytest.fixture
def notify(functions):
    return functions["notify_failures"]


async def dead_letter_through_provision(stack, functions, queue, *messages: ServiceBusMessage) -> None:
    """Send the messages and run provision_user on them as the host does (abandon on exception) until
    the queue's max delivery count moves each one to the dead-letter queue."""
    before = stack.servicebus.dead_letter_count(QUEUE)
    await queue.send(*messages)
    host = QueueTriggerHost(stack.env["ServiceBusConnection"], QUEUE, functions["provision_user"])
    await host.run(idle_seconds=IDLE_SECONDS)
    assert stack.servicebus.dead_letter_count(QUEUE) == before + len(messages)
    assert stack.servicebus.message_count(QUEUE) == 0


def unprovisionable(stack, given: str) -> str:
    """A user Salesforce refuses to create: no mail (REQUIRED_FIELD_MISSING)."""
    return hire(stack, given, "Nomail", mail=None)


async def test_one_digest_names_each_failure_then_the_records_are_deleted(stack, functions, queue, dead_letters,
                                                                         state, notify):
    users = [unprovisionable(stack, "Ana"), unprovisionable(stack, "Bo")]
    failing = [reconcile_message(u, "hire") for u in users]
    malformed = ServiceBusMessage(b"{not json", message_id=f"malformed-{uuid.uuid4()}")
    await dead_letter_through_provision(stack, functions, queue, *failing, malformed)
    # and one dead-lettered by someone else, with no failure record: its dead-letter reason is reported
    stray_user = hire(stack, "Cy", "Stray")
    stray = reconcile_message(stray_user, "hire")
    await queue.send(stray)
    [received] = await queue.receive(1)
    await queue.dead_letter(received, "OperatorMovedIt", "moved by hand")
    ids = [m.message_id for m in (*failing, malformed, stray)]
    assert all(state.get_failure(i) is not None for i in ids[:3])

    letters = await dead_letters.receive(len(ids))
    batch = [to_functions_message(m) for m in letters]
    assert {b.dead_letter_reason for b in batch} == {"MaxDeliveryCountExceeded", "OperatorMovedIt"}
    outbox = len(stack.graph.outbox)
    await notify(batch)
    await dead_letters.complete(*letters)

    [mail] = stack.graph.outbox[outbox:]
    assert mail.to == ("identity-admins@contoso.com",)
    assert mail.sender_id == stack.tenant.find_user(stack.demo.notification_sender)["id"]
    assert mail.subject.startswith("Salesforce provisioning: 4 failures")
    for user_id in (*users, stray_user):
        assert f"user {user_id}:" in mail.body
    for code in ("REQUIRED_FIELD_MISSING", "SalesforceRequiredFieldMissing", "InvalidMessage", "OperatorMovedIt"):
        assert code in mail.body
    assert "Populate it in Entra ID" in mail.body  # the tutorial's advice for a missing required field
    assert malformed.message_id in mail.body
    assert [state.get_failure(i) for i in ids] == [None] * len(ids)
    assert stack.servicebus.dead_letter_count(QUEUE) == 0


async def test_when_the_mail_is_refused_the_batch_raises_and_the_records_are_kept(stack, functions, queue,
                                                                                 dead_letters, state, notify):
    user = unprovisionable(stack, "Dee")
    message = reconcile_message(user, "hire")
    await dead_letter_through_provision(stack, functions, queue, message)
    [letter] = await dead_letters.receive(1)
    outbox, send_calls = len(stack.graph.outbox), stack.graph.calls["users.sendMail"]

    stack.graph.faults.add("users.sendMail", 403)  # e.g. the app lost Mail.Send: not worth a retry
    try:
        with pytest.raises(ProvisioningError):
            await notify([to_functions_message(letter)])
    finally:
        stack.graph.faults.clear()
    await dead_letters.abandon(letter)  # what the host does when the function raises

    assert stack.graph.calls["users.sendMail"] > send_calls  # it did try
    assert len(stack.graph.outbox) == outbox
    failure = state.get_failure(message.message_id)
    assert failure is not None and failure.code == "REQUIRED_FIELD_MISSING"
    assert stack.servicebus.dead_letter_count(QUEUE) == 1

    [again] = await dead_letters.receive(1)  # the next delivery, once mail works again, is reported
    await notify([to_functions_message(again)])
    await dead_letters.complete(again)
    [mail] = stack.graph.outbox[outbox:]
    assert f"user {user}:" in mail.body
    assert state.get_failure(message.message_id) is None
