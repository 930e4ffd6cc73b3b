"""The reconcile queue on Azure Service Bus (azure-servicebus, async). Implements core `ReconcileQueue`.

Messages go out in as few `ServiceBusMessageBatch`es as the link's size limit allows. A send that fails
part-way raises after some batches went out; the caller then does not advance its checkpoint and
re-sends, and duplicate detection on `message_id` drops what already arrived.

One sender link serves every caller of a worker, one operation at a time: the SDK's sender is not safe
for concurrent use (concurrent first sends race to open the link and fail). Callers that arrive while
a send is in flight are grouped into the next one (group commit), so a burst of webhook calls costs a
few sends, not one each; every caller returns (or raises) only once its own messages were sent (or
not)."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Sequence

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import AzureError
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient, ServiceBusSender
from azure.servicebus.exceptions import (
    MessageSizeExceededError,
    MessagingEntityDisabledError,
    OperationTimeoutError,
    ServiceBusAuthenticationError,
    ServiceBusCommunicationError,
    ServiceBusConnectionError,
    ServiceBusError,
    ServiceBusServerBusyError,
)

from shared.core.errors import ConfigurationError, PermanentError, ProvisioningError, TransientError
from shared.core.messages import ReconcileMessage

log = logging.getLogger(__name__)

SYSTEM = "servicebus"
CONTENT_TYPE = "application/json"

# Failures a later attempt can get past. Everything else the SDK raises (entity not found, missing
# send permission, message too large, quota exceeded) needs a person.
_TRANSIENT_SDK_ERRORS = (
    ServiceBusConnectionError,
    ServiceBusCommunicationError,
    OperationTimeoutError,
    ServiceBusServerBusyError,
    ServiceBusAuthenticationError,
    MessagingEntityDisabledError,
)


def service_bus_error(exc: BaseException) -> ProvisioningError:
    """Classify an SDK or network failure once, here."""
    code = type(exc).__name__
    message = getattr(exc, "message", None) or str(exc) or code
    if isinstance(exc, ServiceBusError) and not isinstance(exc, _TRANSIENT_SDK_ERRORS):
        return PermanentError(code, message, system=SYSTEM)
    return TransientError(code, message, system=SYSTEM)


class ServiceBusReconcileQueue:
    """Either `connection_string` (local: the emulator's, or a SAS connection string) or
    `fully_qualified_namespace` + an async `credential` (Azure, identity-based). `use_tls=False` only
    for a loopback stand-in reached with a credential. `retry_total` is the SDK's own retry count
    before a failure reaches the caller."""

    def __init__(
        self,
        queue_name: str,
        *,
        connection_string: str | None = None,
        fully_qualified_namespace: str | None = None,
        credential: AsyncTokenCredential | None = None,
        use_tls: bool = True,
        retry_total: int = 3,
    ) -> None:
        if not queue_name:
            raise ConfigurationError("the Service Bus queue name is empty")
        if bool(connection_string) == bool(fully_qualified_namespace):
            raise ConfigurationError("give either a Service Bus connection string or a fully qualified namespace")
        if fully_qualified_namespace and credential is None:
            raise ConfigurationError("a fully qualified namespace needs a token credential")
        self.queue_name = queue_name
        self._connection_string = connection_string
        self._namespace = fully_qualified_namespace
        self._credential = credential
        self._use_tls = use_tls
        self._retry_total = retry_total
        self._client: ServiceBusClient | None = None
        self._sender: ServiceBusSender | None = None
        self._send_lock = asyncio.Lock()
        self._waiting: list[_Waiting] = []  # callers whose messages the next send takes

    async def send(self, messages: Sequence[ReconcileMessage], *, delay_seconds: float = 0) -> None:
        if not messages:
            return
        scheduled_at = datetime.now(timezone.utc) + timedelta(seconds=delay_seconds) if delay_seconds > 0 else None
        waiting = _Waiting([_to_service_bus_message(m, scheduled_at) for m in messages],
                           asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        try:
            async with self._send_lock:
                if not waiting.done.done():  # else an earlier holder of the lock sent these messages too
                    await self._send_waiting()
        except asyncio.CancelledError:
            if waiting in self._waiting:  # not taken by a send: nobody will report on these messages
                self._waiting.remove(waiting)
            raise
        failure = waiting.done.result()
        if failure is not None:
            raise service_bus_error(failure) from failure

    async def _send_waiting(self) -> None:
        """Send every waiting caller's messages together; tell each caller how it went."""
        group, self._waiting = self._waiting, []
        outgoing = [m for w in group for m in w.messages]
        failure: BaseException | None = None
        try:
            sender = await self._open_sender()
            batches = await self._send_in_batches(sender, outgoing)
        except (AzureError, OSError, asyncio.TimeoutError) as exc:
            failure = exc
            await self._discard_sender()
        except BaseException as exc:  # cancelled (or a bug): the others must not wait forever
            for w in group:
                w.done.set_result(exc)
            raise
        else:
            scheduled = sum(1 for m in outgoing if m.scheduled_enqueue_time_utc is not None)
            log.info("sent %d reconcile messages to queue %s in %d batch(es)%s%s", len(outgoing), self.queue_name,
                     batches, f" for {len(group)} callers" if len(group) > 1 else "",
                     f", {scheduled} scheduled for later" if scheduled else "")
        for w in group:
            w.done.set_result(failure)

    @staticmethod
    async def _send_in_batches(sender: ServiceBusSender, outgoing: list[ServiceBusMessage]) -> int:
        batches = 0
        batch = await sender.create_message_batch()
        for message in outgoing:
            try:
                batch.add_message(message)
                continue
            except MessageSizeExceededError:
                if len(batch) == 0:  # this message alone is over the limit
                    raise
            await sender.send_messages(batch)
            batches += 1
            batch = await sender.create_message_batch()
            batch.add_message(message)
        await sender.send_messages(batch)
        return batches + 1

    async def _open_sender(self) -> ServiceBusSender:
        # Opening a link costs about half a second: one sender, opened by its first batch, reused.
        # Called with the send lock held.
        if self._sender is None:
            if self._client is None:
                self._client = self._new_client()
            self._sender = self._client.get_queue_sender(self.queue_name)
        return self._sender

    def _new_client(self) -> ServiceBusClient:
        if self._connection_string:
            return ServiceBusClient.from_connection_string(self._connection_string, retry_total=self._retry_total)
        assert self._namespace is not None and self._credential is not None
        return ServiceBusClient(self._namespace, self._credential, use_tls=self._use_tls, retry_total=self._retry_total)

    async def _discard_sender(self) -> None:
        """After a failure, start the next send on a fresh link rather than a possibly broken one."""
        sender, self._sender = self._sender, None
        if sender is not None:
            try:
                await sender.close()
            except Exception:  # closing a broken link may fail too; the failure being reported matters
                log.debug("closing the failed Service Bus sender failed", exc_info=True)

    async def close(self) -> None:
        async with self._send_lock:  # after the send in flight
            await self._discard_sender()
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def __aenter__(self) -> "ServiceBusReconcileQueue":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


@dataclass(eq=False)
class _Waiting:
    """One caller's messages, and the outcome of the send that took them (None: sent)."""

    messages: list[ServiceBusMessage]
    done: "asyncio.Future[BaseException | None]"


def _to_service_bus_message(message: ReconcileMessage, scheduled_at: datetime | None) -> ServiceBusMessage:
    return ServiceBusMessage(
        message.to_json(),
        message_id=message.message_id,
        content_type=CONTENT_TYPE,
        scheduled_enqueue_time_utc=scheduled_at,
    )
