"""Talk to the local stack's queue with the real SDK, as the host and other senders do: send, receive
in peek-lock, turn a received message into the worker's binding object, settle."""
from __future__ import annotations

import json
from typing import Any

import azure.functions as func
from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver, ServiceBusSender

from cli.local_stack import QUEUE, LocalStack
from emulators.functions_host import to_functions_message
from shared.core.messages import ReconcileMessage

RECEIVE_WAIT_SECONDS = 5.0  # an upper bound while waiting for messages known to be there, not a timing


def reconcile_message(entra_id: str, cause: str, reason: str = "delta") -> ServiceBusMessage:
    """A valid queue message for a user, as detect_changes would send it."""
    message = ReconcileMessage.new(entra_id, reason, cause)  # type: ignore[arg-type]
    return ServiceBusMessage(message.to_json(), message_id=message.message_id, content_type="application/json")


def queued_bodies(stack: LocalStack, since: int = 0) -> list[dict[str, Any]]:
    """Bodies of the messages the queue accepted, from position `since` of its record."""
    return [json.loads(m.body or b"") for m in stack.servicebus.messages_seen(QUEUE)[since:]]


class QueueSession:
    """One SDK client with one sender and one peek-lock receiver on the stack's queue (or its
    dead-letter queue), kept open for a module: opening an AMQP link costs about half a second."""

    def __init__(self, stack: LocalStack, *, dead_letter: bool = False) -> None:
        self._client = ServiceBusClient.from_connection_string(stack.env["ServiceBusConnection"])
        self._dead_letter = dead_letter
        self._receiver: ServiceBusReceiver | None = None
        self._sender: ServiceBusSender | None = None

    async def __aenter__(self) -> "QueueSession":
        self._receiver = self._client.get_queue_receiver(
            QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER if self._dead_letter else None, keep_alive=0)
        await self._receiver.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._receiver is not None
        await self._receiver.__aexit__(*exc)
        if self._sender is not None:
            await self._sender.__aexit__(*exc)
        await self._client.close()

    async def send(self, *messages: ServiceBusMessage) -> None:
        if self._sender is None:
            self._sender = self._client.get_queue_sender(QUEUE, keep_alive=0)
            await self._sender.__aenter__()
        await self._sender.send_messages(list(messages))

    async def receive(self, count: int = 1) -> list[ServiceBusReceivedMessage]:
        assert self._receiver is not None
        received: list[ServiceBusReceivedMessage] = []
        while len(received) < count:
            batch = await self._receiver.receive_messages(max_message_count=count - len(received),
                                                          max_wait_time=RECEIVE_WAIT_SECONDS)
            if not batch:
                raise AssertionError(f"expected {count} messages on the queue, received {len(received)}")
            received += batch
        return received

    async def receive_binding(self, message_id: str) -> tuple[ServiceBusReceivedMessage, func.ServiceBusMessage]:
        """The next message, which must be `message_id`, and the func.ServiceBusMessage the worker would
        build from it."""
        [message] = await self.receive(1)
        assert message.message_id == message_id, f"expected message {message_id}, received {message.message_id}"
        return message, to_functions_message(message)

    async def complete(self, *messages: ServiceBusReceivedMessage) -> None:
        assert self._receiver is not None
        for message in messages:
            await self._receiver.complete_message(message)

    async def abandon(self, message: ServiceBusReceivedMessage) -> None:
        assert self._receiver is not None
        await self._receiver.abandon_message(message)

    async def dead_letter(self, message: ServiceBusReceivedMessage, reason: str, description: str) -> None:
        assert self._receiver is not None
        await self._receiver.dead_letter_message(message, reason=reason, error_description=description)

    async def drain(self, count: int) -> list[dict[str, Any]]:
        """Receive and complete `count` messages; their JSON bodies."""
        if count == 0:
            return []
        messages = await self.receive(count)
        await self.complete(*messages)
        return [json.loads(b"".join(m.body)) for m in messages]
