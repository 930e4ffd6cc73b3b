"""What the Azure Functions host does for a Service Bus queue trigger, for local demos and end-to-end
tests (the host itself cannot run here): receive in peek-lock with the real SDK, turn each message into
the `azure.functions.ServiceBusMessage` the Python worker would build, call the function, complete it
on success and abandon it on an exception, so delivery counts and max-delivery dead-lettering behave
as in Azure.

    host = QueueTriggerHost(bus.connection_string, "provision-users", provision_function)
    results = await host.run(idle_seconds=1.0)   # returns once the queue has been idle for 1 s
"""
from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import json
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Literal, TypeVar

import azure.functions as func
from azure.functions.meta import Datum
from azure.functions.servicebus import ServiceBusMessageInConverter
from azure.servicebus import ServiceBusReceivedMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver
from azure.servicebus.exceptions import ServiceBusError

log = logging.getLogger(__name__)

OPERATION_TIMEOUT_SECONDS = 30.0  # a receive, settlement or renewal pending longer means a stuck link
T = TypeVar("T")

FunctionHandler = Callable[[func.ServiceBusMessage], "Awaitable[None] | None"]
Outcome = Literal["completed", "abandoned", "lock_lost"]


@dataclass(frozen=True)
class Invocation:
    """One call of the function and how the message was settled afterwards."""

    message_id: str | None
    delivery_count: int  # as the function saw it: 1 on the first delivery, as the host counts
    outcome: Outcome
    error: BaseException | None = None


def to_functions_message(message: ServiceBusReceivedMessage) -> func.ServiceBusMessage:
    """Build the binding object through the worker's own converter, from the trigger metadata the
    host sends. The host (the .NET SDK) counts deliveries from 1; the Python SDK reports the AMQP
    header, which counts from 0."""
    properties = _json_ready(message.application_properties or {})
    metadata: dict[str, Any] = {
        "MessageId": message.message_id,
        "ContentType": message.content_type,
        "CorrelationId": message.correlation_id,
        "DeliveryCount": (message.delivery_count or 0) + 1,
        "SequenceNumber": message.sequence_number,
        "EnqueuedTimeUtc": message.enqueued_time_utc,
        "ExpiresAtUtc": message.expires_at_utc,
        "ScheduledEnqueueTimeUtc": message.scheduled_enqueue_time_utc,
        "LockedUntil": message.locked_until_utc,
        "LockToken": None if message.lock_token is None else str(message.lock_token),
        "DeadLetterReason": message.dead_letter_reason,
        "DeadLetterErrorDescription": message.dead_letter_error_description,
        "DeadLetterSource": message.dead_letter_source,
        "Subject": message.subject,
        "Label": message.subject,
        "ReplyTo": message.reply_to,
        "ReplyToSessionId": message.reply_to_session_id,
        "SessionId": message.session_id,
        "PartitionKey": message.partition_key,
        "To": message.to,
        "State": int(message.state),
        "ApplicationProperties": properties,
        "UserProperties": properties,
    }
    trigger_metadata = {k: _datum(v) for k, v in metadata.items() if v is not None}
    return ServiceBusMessageInConverter.decode(Datum(b"".join(message.body), "bytes"), trigger_metadata=trigger_metadata)


def _datum(value: Any) -> Datum:
    if isinstance(value, dict):
        return Datum(json.dumps(value), "json")
    if isinstance(value, dt.datetime):
        return Datum(value.astimezone(dt.timezone.utc).isoformat(timespec="microseconds"), "string")
    if isinstance(value, int):
        return Datum(value, "int")
    return Datum(str(value), "string")


def _json_ready(properties: dict) -> dict[str, Any]:
    """The SDK hands application properties over as AMQP decoded them (bytes keys and strings)."""
    def plain(value: Any) -> Any:
        if isinstance(value, bytes):
            return value.decode("utf-8", errors="replace")
        if isinstance(value, (dt.datetime, dt.date)):
            return value.isoformat()
        if isinstance(value, (str, int, float, bool)) or value is None:
            return value
        return str(value)

    return {plain(k): plain(v) for k, v in properties.items()}


class QueueTriggerHost:
    """A Service Bus queue trigger (or, with `dead_letter=True`, a trigger on `<queue>/$deadletterqueue`;
    with `many=True`, a batch trigger: cardinality "many", settled all together).
    Sync functions run on worker threads, as the Python worker runs them; locks are renewed while a call
    is running (the host's maxAutoLockRenewalDuration, 5 minutes by default)."""

    def __init__(
        self,
        connection_string: str,
        queue_name: str,
        function: FunctionHandler,
        *,
        dead_letter: bool = False,
        many: bool = False,
        max_concurrent_calls: int = 16,
        max_auto_lock_renewal_seconds: float = 300,
        on_invocation: Callable[[Invocation], None] | None = None,
    ) -> None:
        if max_concurrent_calls < 1:
            raise ValueError("max_concurrent_calls must be at least 1")
        self.connection_string = connection_string
        self.queue_name = queue_name
        self.function = function
        self.dead_letter = dead_letter
        self.many = many  # cardinality "many": one call with the whole received batch
        self.max_concurrent_calls = max_concurrent_calls
        self.max_auto_lock_renewal_seconds = max_auto_lock_renewal_seconds
        self.on_invocation = on_invocation
        self._stopping = asyncio.Event()
        self._last_activity = 0.0  # loop time of the last batch, across reconnections

    def stop(self) -> None:
        """Stop receiving; calls in progress finish and are settled."""
        self._stopping.set()

    async def run(self, *, idle_seconds: float | None = None, poll_seconds: float = 1.0) -> list[Invocation]:
        """Receive and dispatch until stop(), or until nothing arrived and nothing ran for
        `idle_seconds`. Returns every invocation, in the order they were settled. A receiver that
        stops answering (an SDK call pending past OPERATION_TIMEOUT_SECONDS) is replaced by a new
        connection, as the host recovers its listener; what it held is delivered again."""
        invocations: list[Invocation] = []
        loop = asyncio.get_running_loop()
        self._last_activity = loop.time()
        while not self._stopping.is_set():
            try:
                await self._listen(invocations, idle_seconds, poll_seconds)
                break
            except _ReceiverStuck as stuck:
                log.warning("the Service Bus receiver stopped answering (%s); reconnecting", stuck)
        return invocations

    async def _listen(self, invocations: list[Invocation], idle_seconds: float | None, poll_seconds: float) -> None:
        loop = asyncio.get_running_loop()
        wait = min(poll_seconds, idle_seconds) if idle_seconds else poll_seconds
        client = await ServiceBusClient.from_connection_string(self.connection_string).__aenter__()
        receiver = client.get_queue_receiver(
            self.queue_name,
            sub_queue=ServiceBusSubQueue.DEAD_LETTER if self.dead_letter else None,
            # no keep-alive pings: the receiver polls anyway, and closing need not wait
            # out the keep-alive task's 1 s sleep
            keep_alive=0,
        )
        try:
            await _bounded(receiver.__aenter__(), "open")
            while not self._stopping.is_set():
                # Receive a batch, run its calls concurrently, then settle one by one: with
                # the async SDK, settlements awaiting their outcomes concurrently (or while a
                # receive runs) take ~200 ms each instead of well under 1 ms.
                messages = await _bounded(receiver.receive_messages(
                    max_message_count=self.max_concurrent_calls, max_wait_time=wait), "receive")
                if messages:
                    bindings = [to_functions_message(m) for m in messages]
                    calls_done = asyncio.Event()
                    renewing = asyncio.create_task(self._keep_locks(receiver, messages, calls_done))
                    try:
                        if self.many:
                            errors = [await self._call(bindings)] * len(bindings)
                        else:
                            errors = await asyncio.gather(*(self._call(b) for b in bindings))
                    finally:
                        calls_done.set()
                        await renewing
                    for message, binding, error in zip(messages, bindings, errors):
                        invocations.append(await self._settle(receiver, message, binding, error))
                    self._last_activity = loop.time()
                elif idle_seconds is not None and loop.time() - self._last_activity >= idle_seconds:
                    return
        finally:
            for handler in (receiver, client):
                try:
                    await asyncio.wait_for(handler.close(), OPERATION_TIMEOUT_SECONDS)
                except (asyncio.TimeoutError, ServiceBusError):
                    pass  # a stuck connection is abandoned; the broker lets its locks expire

    async def _keep_locks(self, receiver: ServiceBusReceiver, messages: list[ServiceBusReceivedMessage],
                          calls_done: asyncio.Event) -> None:
        """Renew the batch's locks while its calls run, one renewal at a time and never during a
        receive or a settlement (the SDK's AutoLockRenewer renews every message concurrently, which
        breaks its management link once a batch holds a few dozen messages). Renews when half of the
        shortest remaining lock has passed, for up to max_auto_lock_renewal_seconds."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.max_auto_lock_renewal_seconds
        held = [m for m in messages if m.locked_until_utc is not None]
        while held and loop.time() < give_up:
            now = dt.datetime.now(dt.timezone.utc)
            remaining = min((m.locked_until_utc - now).total_seconds() for m in held)  # type: ignore[operator]
            try:
                await asyncio.wait_for(calls_done.wait(), max(0.1, remaining / 2))
                return
            except asyncio.TimeoutError:
                pass
            for message in list(held):
                try:
                    await _bounded(receiver.renew_message_lock(message), "renew-lock")
                except ServiceBusError as exc:  # already lost: the message will be delivered again
                    log.warning("could not renew the lock of message %s: %s", message.message_id, type(exc).__name__)
                    held.remove(message)

    async def _call(self, binding: Any) -> Exception | None:
        """Call the function with one binding (or, for `many`, the batch's list); what it raises is
        the error the host would log, not a host failure."""
        try:
            if inspect.iscoroutinefunction(self.function):
                await self.function(binding)
            else:
                result = await asyncio.to_thread(self.function, binding)
                if inspect.isawaitable(result):
                    await result
        except Exception as exc:
            first = binding[0] if isinstance(binding, list) else binding
            log.warning("function failed for message %s (delivery %s): %s", first.message_id,
                        first.delivery_count, type(exc).__name__)
            return exc
        return None

    async def _settle(self, receiver: ServiceBusReceiver, message: ServiceBusReceivedMessage,
                      binding: func.ServiceBusMessage, error: Exception | None) -> Invocation:
        try:
            if error is None:
                await _bounded(receiver.complete_message(message), "complete")
                outcome: Outcome = "completed"
            else:
                await _bounded(receiver.abandon_message(message), "abandon")
                outcome = "abandoned"
        except ServiceBusError as exc:  # e.g. the lock expired while the function ran
            log.warning("could not settle message %s: %s", message.message_id, type(exc).__name__)
            outcome = "lock_lost"
        invocation = Invocation(message.message_id, binding.delivery_count or 1, outcome, error)
        if self.on_invocation is not None:
            self.on_invocation(invocation)
        return invocation



class _ReceiverStuck(Exception):
    """An SDK call on the receiver got no answer in time."""


async def _bounded(call: Awaitable[T], what: str) -> T:
    try:
        return await asyncio.wait_for(call, OPERATION_TIMEOUT_SECONDS)
    except asyncio.TimeoutError:
        raise _ReceiverStuck(f"{what} unanswered after {OPERATION_TIMEOUT_SECONDS:g} s") from None


_INDEXED: dict[int, list[Any]] = {}


def _indexed(app: func.FunctionApp) -> list[Any]:
    """`get_functions()` may run only once per app instance, so the worker's index is kept."""
    if id(app) not in _INDEXED:
        _INDEXED[id(app)] = app.get_functions()
    return _INDEXED[id(app)]


def registered_functions(app: func.FunctionApp) -> dict[str, Callable[..., Any]]:
    """The app's functions by name, as the worker indexes them: the plain callables the host invokes."""
    return {f.get_function_name(): f.get_user_function() for f in _indexed(app)}


def binding_settings(app: func.FunctionApp) -> dict[str, list[dict[str, Any]]]:
    """The binding JSON the worker hands the host, by function name."""
    return {f.get_function_name(): [json.loads(b) if isinstance(b, str) else b for b in f.get_raw_bindings()]
            for f in _indexed(app)}
