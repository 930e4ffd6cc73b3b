"""The Service Bus stand-in, driven by the real azure-servicebus SDK over AMQP on loopback."""
from __future__ import annotations

import datetime as dt
import time

import pytest
from azure.servicebus import (
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient
from azure.servicebus.exceptions import (
    MessageLockLostError,
    MessageSizeExceededError,
    ServiceBusError,
    ServiceBusServerBusyError,
)

from emulators.servicebus import QueueConfig, run_servicebus_emulator

WAIT = 10  # seconds a receive may wait before a test fails; never an assertion on timing
# Links are opened with keep_alive=0: closing one otherwise waits out the SDK's 1 s keep-alive sleep.


def client(bus) -> ServiceBusClient:
    # retry_total=0: a failure shows at once instead of after the SDK's backoff
    return ServiceBusClient.from_connection_string(bus.connection_string, retry_total=0)


def receive_one(receiver, **kwargs):
    messages = receiver.receive_messages(max_message_count=1, max_wait_time=WAIT, **kwargs)
    assert len(messages) == 1, "expected one message"
    return messages[0]


def test_round_trip_keeps_message_id_body_and_properties():
    with run_servicebus_emulator(["reconcile"]) as bus, client(bus) as sb:
        with sb.get_queue_sender("reconcile", keep_alive=0) as sender:
            sender.send_messages(ServiceBusMessage(
                b'{"entraId":"x"}', message_id="m-1", content_type="application/json",
                application_properties={"reason": "delta", "attempt": 2},
            ))
        assert bus.active_count("reconcile") == 1
        with sb.get_queue_receiver("reconcile", keep_alive=0) as receiver:
            message = receive_one(receiver)
            assert b"".join(message.body) == b'{"entraId":"x"}'
            assert message.message_id == "m-1"
            assert message.content_type == "application/json"
            assert message.application_properties == {b"reason": b"delta", b"attempt": 2}
            assert message.delivery_count == 0
            assert message.sequence_number == 1
            assert message.enqueued_time_utc is not None
            assert message.locked_until_utc > message.enqueued_time_utc
            assert bus.locked_count("reconcile") == 1
            receiver.complete_message(message)
        assert bus.message_count("reconcile") == 0


async def test_async_round_trip_and_abandon_redelivers_with_count_plus_one():
    with run_servicebus_emulator(["reconcile"]) as bus:
        async with AsyncServiceBusClient.from_connection_string(bus.connection_string, retry_total=0) as sb:
            async with sb.get_queue_sender("reconcile", keep_alive=0) as sender:
                await sender.send_messages(ServiceBusMessage("hello", message_id="a-1"))
            async with sb.get_queue_receiver("reconcile", keep_alive=0) as receiver:
                [first] = await receiver.receive_messages(max_message_count=1, max_wait_time=WAIT)
                assert (first.message_id, first.delivery_count) == ("a-1", 0)
                await receiver.abandon_message(first)
                [again] = await receiver.receive_messages(max_message_count=1, max_wait_time=WAIT)
                assert (again.message_id, again.delivery_count) == ("a-1", 1)
                await receiver.complete_message(again)
        assert bus.message_count("reconcile") == 0


def test_batch_of_500_arrives_in_order():
    with run_servicebus_emulator(["reconcile"]) as bus, client(bus) as sb:
        ids = [f"user-{i:03}" for i in range(500)]
        with sb.get_queue_sender("reconcile", keep_alive=0) as sender:
            batch = sender.create_message_batch()
            for message_id in ids:
                batch.add_message(ServiceBusMessage(f"body {message_id}", message_id=message_id))
            sender.send_messages(batch)
        seen = bus.messages_seen("reconcile")
        assert [m.message_id for m in seen] == ids
        assert seen[7].body == b"body user-007"
        received = []
        with sb.get_queue_receiver("reconcile", keep_alive=0, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as receiver:
            while len(received) < 500:
                batch_received = receiver.receive_messages(max_message_count=500, max_wait_time=WAIT)
                assert batch_received, "messages went missing"
                received.extend(batch_received)
        assert [m.message_id for m in received] == ids
        assert bus.message_count("reconcile") == 0


def test_duplicate_message_id_is_dropped_within_the_window():
    with run_servicebus_emulator([QueueConfig("reconcile", duplicate_detection_window=600)]) as bus, client(bus) as sb:
        with sb.get_queue_sender("reconcile", keep_alive=0) as sender:
            sender.send_messages(ServiceBusMessage("first", message_id="same"))
            sender.send_messages([ServiceBusMessage("second", message_id="same"), ServiceBusMessage("other", message_id="other")])
        assert [m.message_id for m in bus.messages_seen("reconcile")] == ["same", "other"]
        assert bus.messages_seen("reconcile")[0].body == b"first"
        assert bus.duplicates_dropped("reconcile") == 1


def test_duplicates_are_kept_when_detection_is_off():
    with run_servicebus_emulator([QueueConfig("reconcile", duplicate_detection_window=None)]) as bus, client(bus) as sb:
        with sb.get_queue_sender("reconcile", keep_alive=0) as sender:
            sender.send_messages([ServiceBusMessage("a", message_id="same"), ServiceBusMessage("b", message_id="same")])
        assert bus.active_count("reconcile") == 2


def test_abandon_until_max_delivery_count_moves_to_dead_letter_queue():
    with run_servicebus_emulator([QueueConfig("reconcile", max_delivery_count=3)]) as bus, client(bus) as sb:
        with sb.get_queue_sender("reconcile", keep_alive=0) as sender:
            sender.send_messages(ServiceBusMessage("poison", message_id="p-1", application_properties={"k": "v"}))
        counts = []
        with sb.get_queue_receiver("reconcile", keep_alive=0) as receiver:
            for _ in range(3):
                message = receive_one(receiver)
                counts.append(message.delivery_count)
                receiver.abandon_message(message)
            assert receiver.receive_messages(max_message_count=1, max_wait_time=1) == []
        assert counts == [0, 1, 2]
        assert (bus.message_count("reconcile"), bus.dead_letter_count("reconcile")) == (0, 1)
        with sb.get_queue_receiver("reconcile", keep_alive=0, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
            dead = receive_one(dlq)
            assert dead.message_id == "p-1"
            assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"
            assert dead.delivery_count == 3
            assert dead.application_properties[b"k"] == b"v"
            dlq.complete_message(dead)
        assert bus.dead_letter_count("reconcile") == 0


def test_explicit_dead_letter_keeps_reason_and_description():
    with run_servicebus_emulator(["reconcile"]) as bus, client(bus) as sb:
        with sb.get_queue_sender("reconcile", keep_alive=0) as sender:
            sender.send_messages(ServiceBusMessage("bad", message_id="d-1"))
        with sb.get_queue_receiver("reconcile", keep_alive=0) as receiver:
            receiver.dead_letter_message(receive_one(receiver), reason="DUPLICATE_USERNAME",
                                         error_description="Username jo@contoso.com is taken in another org")
        with sb.get_queue_receiver("reconcile/$deadletterqueue", keep_alive=0) as dlq:
            dead = receive_one(dlq)
        assert (dead.message_id, dead.dead_letter_reason, dead.dead_letter_error_description) == (
            "d-1", "DUPLICATE_USERNAME", "Username jo@contoso.com is taken in another org")
        assert bus.messages_seen("reconcile", dead_letter=True)[0].application_properties["DeadLetterReason"] == "DUPLICATE_USERNAME"


def test_scheduled_messages_are_delivered_when_due_not_before():
    with run_servicebus_emulator(["reconcile"]) as bus, client(bus) as sb:
        due = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2)
        with sb.get_queue_sender("reconcile", keep_alive=0) as sender:
            [number] = sender.schedule_messages(ServiceBusMessage("later-mgmt", message_id="later-1"), due)
            sender.send_messages(ServiceBusMessage("later-annotation", message_id="later-2", scheduled_enqueue_time_utc=due))
            sender.send_messages(ServiceBusMessage("now", message_id="now"))
        assert number == 1
        assert (bus.scheduled_count("reconcile"), bus.active_count("reconcile")) == (2, 1)
        with sb.get_queue_receiver("reconcile", keep_alive=0, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as receiver:
            order = [receive_one(receiver).message_id]
            while len(order) < 3:
                order += [m.message_id for m in receiver.receive_messages(max_message_count=2, max_wait_time=WAIT)]
            assert dt.datetime.now(dt.timezone.utc) >= due - dt.timedelta(milliseconds=1)
        assert order == ["now", "later-1", "later-2"]
        assert bus.scheduled_count("reconcile") == 0


def test_slow_sends_store_and_accept_each_transfer_that_much_later():
    with run_servicebus_emulator(["reconcile"]) as bus, client(bus) as sb:
        with sb.get_queue_sender("reconcile", keep_alive=0) as sender:
            sender.send_messages(ServiceBusMessage("open the link", message_id="s-0"))
            bus.slow_sends(0.5)
            started = time.monotonic()
            sender.send_messages(ServiceBusMessage("late", message_id="s-1"))
            assert time.monotonic() - started >= 0.5  # the send returns when the broker accepts, not before
            bus.slow_sends(0)
            sender.send_messages(ServiceBusMessage("on time", message_id="s-2"))
        assert [m.message_id for m in bus.messages_seen("reconcile")] == ["s-0", "s-1", "s-2"]


def test_refused_sends_fail_as_a_throttled_namespace_and_store_nothing():
    with run_servicebus_emulator(["reconcile"]) as bus, client(bus) as sb:
        bus.refuse_sends(1)
        with sb.get_queue_sender("reconcile", keep_alive=0) as sender:
            with pytest.raises(ServiceBusServerBusyError):
                sender.send_messages(ServiceBusMessage("refused", message_id="r-1"))
            sender.send_messages(ServiceBusMessage("taken", message_id="r-2"))
        assert [m.message_id for m in bus.messages_seen("reconcile")] == ["r-2"]


def test_cancelled_scheduled_message_is_never_delivered():
    with run_servicebus_emulator(["reconcile"]) as bus, client(bus) as sb:
        with sb.get_queue_sender("reconcile", keep_alive=0) as sender:
            due = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
            numbers = sender.schedule_messages([ServiceBusMessage("x", message_id="c-1"), ServiceBusMessage("y", message_id="c-2")], due)
            sender.cancel_scheduled_messages(numbers[0])
        assert bus.scheduled_count("reconcile") == 1
        with sb.get_queue_receiver("reconcile", keep_alive=0) as receiver:
            [peeked] = receiver.peek_messages(max_message_count=5)
        assert peeked.message_id == "c-2"


def test_lost_lock_redelivers_with_delivery_count_plus_one():
    with run_servicebus_emulator([QueueConfig("reconcile", lock_duration=1)]) as bus, client(bus) as sb:
        with sb.get_queue_sender("reconcile", keep_alive=0) as sender:
            sender.send_messages(ServiceBusMessage("slow", message_id="s-1"))
        with sb.get_queue_receiver("reconcile", keep_alive=0) as receiver:
            first = receive_one(receiver)
            again = receive_one(receiver)  # arrives only once the first lock expired
            assert (again.message_id, again.delivery_count) == ("s-1", 1)
            with pytest.raises(MessageLockLostError):
                receiver.complete_message(first)
            receiver.complete_message(again)
        assert bus.message_count("reconcile") == 0


def test_peek_does_not_lock_and_renew_extends_the_lock():
    with run_servicebus_emulator(["reconcile"]) as bus, client(bus) as sb:
        with sb.get_queue_sender("reconcile", keep_alive=0) as sender:
            sender.send_messages([ServiceBusMessage("1", message_id="k-1"), ServiceBusMessage("2", message_id="k-2")])
        with sb.get_queue_receiver("reconcile", keep_alive=0) as receiver:
            assert [m.message_id for m in receiver.peek_messages(max_message_count=10)] == ["k-1", "k-2"]
            assert bus.locked_count("reconcile") == 0
            message = receive_one(receiver)
            before = message.locked_until_utc
            renewed = receiver.renew_message_lock(message)
            assert renewed >= before
            receiver.complete_message(message)
        assert [m.message_id for m in bus.messages_seen("reconcile")] == ["k-1", "k-2"]
        assert bus.message_count("reconcile") == 1


def test_unknown_queue_is_refused():
    with run_servicebus_emulator(["reconcile"]) as bus, client(bus) as sb:
        with pytest.raises(ServiceBusError):
            with sb.get_queue_sender("nope", keep_alive=0) as sender:
                sender.send_messages(ServiceBusMessage("x"))


def test_link_advertises_the_standard_tier_message_size():
    with run_servicebus_emulator(["reconcile"]) as bus, client(bus) as sb:
        with sb.get_queue_sender("reconcile", keep_alive=0) as sender:
            assert sender.create_message_batch().max_size_in_bytes == 256 * 1024
            with pytest.raises(MessageSizeExceededError):
                sender.send_messages(ServiceBusMessage(b"x" * (300 * 1024)))
        assert bus.message_count("reconcile") == 0


def test_a_broker_that_cannot_listen_says_why():
    with run_servicebus_emulator(["reconcile"]) as bus:
        with pytest.raises(RuntimeError, match="failed") as raised:
            with run_servicebus_emulator(["reconcile"], port=bus.port):
                pass
    assert isinstance(raised.value.__cause__, OSError)
