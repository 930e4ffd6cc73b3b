"""The local queue-trigger host: real SDK receive from the stand-in, real azure.functions binding
objects, settlement as the Functions host does it."""
from __future__ import annotations

import asyncio
import threading

import azure.functions as func
import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient

from emulators.functions_host import QueueTriggerHost
from emulators.servicebus import QueueConfig, run_servicebus_emulator

QUEUE = "provision-users"
IDLE = 0.5  # how long an empty queue ends a run; no assertion depends on it


async def send(bus, *messages: ServiceBusMessage) -> None:
    async with ServiceBusClient.from_connection_string(bus.connection_string) as sb:
        async with sb.get_queue_sender(QUEUE, keep_alive=0) as sender:
            await sender.send_messages(list(messages))


async def test_function_gets_the_binding_object_and_success_completes():
    seen: list[func.ServiceBusMessage] = []

    async def function(message: func.ServiceBusMessage) -> None:
        seen.append(message)

    with run_servicebus_emulator([QUEUE]) as bus:
        await send(bus, ServiceBusMessage(
            b'{"entraId":"1"}', message_id="m-1", content_type="application/json",
            correlation_id="c-1", subject="delta", application_properties={"reason": "delta", "attempt": 0},
        ))
        invocations = await QueueTriggerHost(bus.connection_string, QUEUE, function).run(idle_seconds=IDLE)
        assert bus.message_count(QUEUE) == 0
    [message] = seen
    assert isinstance(message, func.ServiceBusMessage)
    assert message.get_body() == b'{"entraId":"1"}'
    assert (message.message_id, message.content_type, message.correlation_id) == ("m-1", "application/json", "c-1")
    assert message.delivery_count == 1  # the host counts from 1
    assert message.sequence_number == 1
    assert message.enqueued_time_utc is not None and message.enqueued_time_utc.tzinfo is not None
    assert message.locked_until > message.enqueued_time_utc
    assert message.lock_token
    assert message.application_properties == {"reason": "delta", "attempt": 0}
    assert message.user_properties == {"reason": "delta", "attempt": 0}
    assert message.subject == message.label == "delta"
    assert message.dead_letter_reason is None
    assert [(i.message_id, i.outcome) for i in invocations] == [("m-1", "completed")]


async def test_exceptions_abandon_until_max_delivery_count_then_dead_letter():
    counts: list[int] = []

    async def failing(message: func.ServiceBusMessage) -> None:
        counts.append(message.delivery_count)
        raise RuntimeError("Salesforce said no")

    with run_servicebus_emulator([QueueConfig(QUEUE, max_delivery_count=3)]) as bus:
        await send(bus, ServiceBusMessage("x", message_id="poison"))
        invocations = await QueueTriggerHost(bus.connection_string, QUEUE, failing).run(idle_seconds=IDLE)
        assert (bus.message_count(QUEUE), bus.dead_letter_count(QUEUE)) == (0, 1)

        dead: list[func.ServiceBusMessage] = []
        dlq_host = QueueTriggerHost(bus.connection_string, QUEUE, dead.append, dead_letter=True)
        dlq_invocations = await dlq_host.run(idle_seconds=IDLE)
        assert bus.dead_letter_count(QUEUE) == 0
    assert counts == [1, 2, 3]
    assert [i.outcome for i in invocations] == ["abandoned"] * 3
    assert all(isinstance(i.error, RuntimeError) for i in invocations)
    [message] = dead
    assert (message.message_id, message.dead_letter_reason) == ("poison", "MaxDeliveryCountExceeded")
    assert [i.outcome for i in dlq_invocations] == ["completed"]


async def test_dead_letter_trigger_sees_reason_and_description():
    with run_servicebus_emulator([QUEUE]) as bus:
        await send(bus, ServiceBusMessage("x", message_id="d-1"))
        async with ServiceBusClient.from_connection_string(bus.connection_string) as sb:
            async with sb.get_queue_receiver(QUEUE) as receiver:
                [received] = await receiver.receive_messages(max_wait_time=10)
                await receiver.dead_letter_message(received, reason="DUPLICATE_USERNAME", error_description="taken")
        dead: list[func.ServiceBusMessage] = []
        await QueueTriggerHost(bus.connection_string, QUEUE, dead.append, dead_letter=True).run(idle_seconds=IDLE)
    [message] = dead
    assert (message.dead_letter_reason, message.dead_letter_error_description) == ("DUPLICATE_USERNAME", "taken")
    assert message.application_properties["DeadLetterReason"] == "DUPLICATE_USERNAME"


async def test_sync_functions_run_concurrently_on_worker_threads():
    calls = 4
    all_in = threading.Barrier(calls, timeout=20)  # passes only if `calls` invocations overlap
    threads: set[int] = set()
    progress: list[str] = []

    def function(message: func.ServiceBusMessage) -> None:
        threads.add(threading.get_ident())
        all_in.wait()

    with run_servicebus_emulator([QUEUE]) as bus:
        await send(bus, *(ServiceBusMessage(str(i), message_id=f"c-{i}") for i in range(calls * 2)))
        host = QueueTriggerHost(bus.connection_string, QUEUE, function, max_concurrent_calls=calls,
                                on_invocation=lambda i: progress.append(i.outcome))
        invocations = await host.run(idle_seconds=IDLE)
        assert bus.message_count(QUEUE) == 0
    assert sorted(i.message_id for i in invocations) == sorted(f"c-{i}" for i in range(calls * 2))
    assert progress == ["completed"] * (calls * 2)
    assert threading.get_ident() not in threads and len(threads) >= 2


async def test_stop_ends_a_run_without_an_idle_timeout():
    host: QueueTriggerHost

    async def function(message: func.ServiceBusMessage) -> None:
        host.stop()

    with run_servicebus_emulator([QUEUE]) as bus:
        await send(bus, ServiceBusMessage("a", message_id="s-1"))
        host = QueueTriggerHost(bus.connection_string, QUEUE, function)
        invocations = await host.run()
    assert [(i.message_id, i.outcome) for i in invocations] == [("s-1", "completed")]


@pytest.mark.slow
async def test_lock_is_renewed_while_a_slow_function_runs():
    # 5 s is Service Bus's shortest lock; the SDK's AutoLockRenewer checks once a second, so it
    # cannot keep shorter locks alive.
    async def slow(message: func.ServiceBusMessage) -> None:
        await asyncio.sleep(5.5)  # past the first lock's expiry

    with run_servicebus_emulator([QueueConfig(QUEUE, lock_duration=5)]) as bus:
        await send(bus, ServiceBusMessage("slow", message_id="r-1"))
        invocations = await QueueTriggerHost(bus.connection_string, QUEUE, slow).run(idle_seconds=IDLE)
        assert bus.message_count(QUEUE) == 0
    assert [(i.delivery_count, i.outcome) for i in invocations] == [(1, "completed")]
