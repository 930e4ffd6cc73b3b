"""ServiceBusReconcileQueue against the Service Bus stand-in, through the real azure-servicebus SDK."""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid

import pytest
from azure.core.credentials import AccessToken
from azure.servicebus import ServiceBusReceiveMode
from azure.servicebus.aio import ServiceBusClient

from emulators.servicebus import run_servicebus_emulator
from shared.adapters.service_bus import ServiceBusReconcileQueue
from shared.core.errors import ConfigurationError, PermanentError, TransientError
from shared.core.messages import ReconcileMessage

QUEUE = "provision-users"


def reconcile_messages(count: int, cause: str = "delta-cursor-1") -> list[ReconcileMessage]:
    return [ReconcileMessage.new(str(uuid.UUID(int=i + 1)), "delta", cause) for i in range(count)]


async def receive_all(bus, count: int) -> list:
    async with ServiceBusClient.from_connection_string(bus.connection_string) as sb:
        async with sb.get_queue_receiver(QUEUE, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as receiver:
            received: list = []
            while len(received) < count:
                got = await receiver.receive_messages(max_message_count=count, max_wait_time=10)
                assert got, "messages went missing"
                received += got
            return received


async def test_sends_json_with_message_id_and_content_type(caplog):
    messages = reconcile_messages(3)
    with run_servicebus_emulator([QUEUE]) as bus:
        async with ServiceBusReconcileQueue(QUEUE, connection_string=bus.connection_string) as queue:
            with caplog.at_level(logging.INFO, logger="shared.adapters.service_bus"):
                await queue.send(messages)
        received = await receive_all(bus, 3)
    assert [m.message_id for m in received] == [m.message_id for m in messages]
    assert {m.content_type for m in received} == {"application/json"}
    parsed = [ReconcileMessage.from_json(b"".join(m.body), m.message_id) for m in received]
    assert parsed == messages
    assert bus.transfers_received(QUEUE) == 1
    assert "sent 3 reconcile messages to queue provision-users in 1 batch(es)" in caplog.text
    assert messages[0].entra_id not in caplog.text  # logs say how many, not who


async def test_many_messages_go_in_as_few_batches_as_the_size_limit_allows():
    messages = reconcile_messages(3000)
    total_bytes = sum(len(m.to_json()) + len(m.message_id) for m in messages)
    with run_servicebus_emulator([QUEUE]) as bus:
        async with ServiceBusReconcileQueue(QUEUE, connection_string=bus.connection_string) as queue:
            await queue.send(messages)
            await queue.send(reconcile_messages(10, cause="delta-cursor-2"))  # the sender link is reused
        seen = bus.messages_seen(QUEUE)
        transfers = bus.transfers_received(QUEUE)
    assert [s.message_id for s in seen[:3000]] == [m.message_id for m in messages]
    assert len(seen) == 3010
    # each batch is filled up to the 256 KiB link limit: more than one, and not more than needed
    assert 2 <= transfers - 1 <= total_bytes // (128 * 1024) + 1


async def test_re_sent_cycle_is_dropped_by_duplicate_detection():
    with run_servicebus_emulator([QUEUE]) as bus:
        async with ServiceBusReconcileQueue(QUEUE, connection_string=bus.connection_string) as queue:
            await queue.send(reconcile_messages(5))
            await queue.send(reconcile_messages(5))  # same cause, same ids: a crash-and-retry re-send
        assert bus.active_count(QUEUE) == 5
        assert bus.duplicates_dropped(QUEUE) == 5


async def test_delay_schedules_the_enqueue():
    retry = reconcile_messages(1)[0].retry()
    with run_servicebus_emulator([QUEUE]) as bus:
        async with ServiceBusReconcileQueue(QUEUE, connection_string=bus.connection_string) as queue:
            sent_at = dt.datetime.now(dt.timezone.utc)
            await queue.send([retry], delay_seconds=1.5)
            assert (bus.scheduled_count(QUEUE), bus.active_count(QUEUE)) == (1, 0)
        [received] = await receive_all(bus, 1)
    assert received.message_id == retry.message_id
    assert received.scheduled_enqueue_time_utc >= sent_at + dt.timedelta(seconds=1.4)
    assert abs(received.enqueued_time_utc - received.scheduled_enqueue_time_utc) <= dt.timedelta(milliseconds=1)


async def test_concurrent_callers_share_one_link_and_every_message_arrives_once():
    """Webhook calls and retries send from many coroutines at once through one adapter. The SDK's
    sender is not safe for that (concurrent first sends race to open the link): callers are grouped."""
    callers = [reconcile_messages(3, cause=f"notification-{i}") for i in range(40)]
    with run_servicebus_emulator([QUEUE]) as bus:
        async with ServiceBusReconcileQueue(QUEUE, connection_string=bus.connection_string) as queue:
            await asyncio.gather(*(queue.send(messages) for messages in callers))
        seen = bus.messages_seen(QUEUE)
        transfers = bus.transfers_received(QUEUE)
    assert sorted(s.message_id for s in seen) == sorted(m.message_id for c in callers for m in c)
    assert transfers < len(callers)  # grouped into fewer sends than callers


async def test_scheduled_and_immediate_messages_of_concurrent_callers_keep_their_own_timing():
    now, later = reconcile_messages(4, cause="now"), [m.retry() for m in reconcile_messages(2, cause="later")]
    with run_servicebus_emulator([QUEUE]) as bus:
        async with ServiceBusReconcileQueue(QUEUE, connection_string=bus.connection_string) as queue:
            await asyncio.gather(queue.send(now[:2]), queue.send(later, delay_seconds=600), queue.send(now[2:]))
        assert (bus.active_count(QUEUE), bus.scheduled_count(QUEUE)) == (4, 2)


async def test_a_failed_send_fails_every_caller_it_carried():
    with run_servicebus_emulator(["other"]) as bus:
        async with ServiceBusReconcileQueue(QUEUE, connection_string=bus.connection_string, retry_total=0) as queue:
            outcomes = await asyncio.gather(*(queue.send(reconcile_messages(1, cause=f"c{i}")) for i in range(5)),
                                            return_exceptions=True)
    assert [type(o) for o in outcomes] == [PermanentError] * 5
    assert {o.code for o in outcomes} == {"MessagingEntityNotFoundError"}


class _StaticCredential:
    """An async TokenCredential for the loopback stand-in, which accepts any token."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    async def get_token(self, *scopes: str, **kwargs) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken("not-a-real-token", int(time.time()) + 3600)

    async def close(self) -> None:
        pass


async def test_identity_based_connection_uses_the_credential():
    credential = _StaticCredential()
    with run_servicebus_emulator([QUEUE]) as bus:
        async with ServiceBusReconcileQueue(
            QUEUE, fully_qualified_namespace=bus.fully_qualified_namespace, credential=credential, use_tls=False
        ) as queue:
            await queue.send(reconcile_messages(2))
        assert bus.active_count(QUEUE) == 2
    assert ("https://servicebus.azure.net//.default",) in credential.scopes


async def test_missing_queue_is_a_permanent_error():
    with run_servicebus_emulator(["other"]) as bus:
        async with ServiceBusReconcileQueue(QUEUE, connection_string=bus.connection_string, retry_total=0) as queue:
            with pytest.raises(PermanentError) as raised:
                await queue.send(reconcile_messages(1))
    assert raised.value.system == "servicebus"
    assert raised.value.code == "MessagingEntityNotFoundError"


async def test_a_throttled_namespace_is_a_transient_error_and_the_next_send_goes_through():
    with run_servicebus_emulator([QUEUE]) as bus:
        async with ServiceBusReconcileQueue(QUEUE, connection_string=bus.connection_string, retry_total=0) as queue:
            bus.refuse_sends(1)
            with pytest.raises(TransientError) as raised:
                await queue.send(reconcile_messages(1))
            await queue.send(reconcile_messages(1))
        assert bus.active_count(QUEUE) == 1
    assert raised.value.code == "ServiceBusServerBusyError"


async def test_unreachable_namespace_is_a_transient_error():
    with run_servicebus_emulator([QUEUE]) as bus:
        connection_string = bus.connection_string
    # the emulator has stopped: nothing listens on its port any more
    async with ServiceBusReconcileQueue(QUEUE, connection_string=connection_string, retry_total=0) as queue:
        with pytest.raises(TransientError) as raised:
            await queue.send(reconcile_messages(1))
    assert raised.value.system == "servicebus"
    assert isinstance(raised.value.__cause__, Exception)


async def test_nothing_to_send_opens_nothing():
    queue = ServiceBusReconcileQueue(QUEUE, connection_string="Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=k;SharedAccessKey=x;UseDevelopmentEmulator=true")
    await queue.send([])
    await queue.close()


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"connection_string": "Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=x", "fully_qualified_namespace": "x.servicebus.windows.net"},
        {"fully_qualified_namespace": "x.servicebus.windows.net"},
    ],
    ids=["neither", "both", "namespace-without-credential"],
)
def test_construction_needs_exactly_one_way_to_connect(kwargs):
    with pytest.raises(ConfigurationError):
        ServiceBusReconcileQueue(QUEUE, **kwargs)

