"""Running the stand-in: a proton reactor on a background thread, listening on loopback, plus the
read-only inspection helpers tests use to check what the broker holds."""
from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from typing import Iterable, Iterator

from proton.reactor import ApplicationEvent, Container, EventInjector

from .entities import Entity, Namespace, QueueConfig, SeenMessage
from .peer import ServiceBusPeer

log = logging.getLogger(__name__)

READY_TIMEOUT_SECONDS = 10.0


class _ReactorHandler(ServiceBusPeer):
    """The peer plus the lifecycle events of the thread that runs it."""

    def __init__(self, namespace: Namespace, host: str, port: int) -> None:
        super().__init__(namespace)
        self._address = (host, port)
        self.acceptor = None
        self.bound_port: int | None = None
        self.ready = threading.Event()
        self.transports: set = set()

    def on_reactor_init(self, event) -> None:
        self.container = event.container
        self.acceptor = event.container.acceptor(*self._address)
        self.bound_port = self.acceptor._selectable.getsockname()[1]  # port 0 → the ephemeral port chosen
        self.ready.set()

    def on_connection_bound(self, event) -> None:
        super().on_connection_bound(event)
        self.transports.add(event.transport)

    def on_transport_closed(self, event) -> None:
        super().on_transport_closed(event)
        self.transports.discard(event.transport)

    def on_stop_emulator(self, event) -> None:
        self.acceptor.close()
        for transport in list(self.transports):
            transport.close_head()
            transport.close_tail()
        self.container.stop()


class ServiceBusEmulator:
    """A running stand-in. `connection_string` is what the SDK and the Functions settings take."""

    def __init__(self, queues: Iterable[str | QueueConfig], host: str = "127.0.0.1", port: int = 0) -> None:
        configs = [q if isinstance(q, QueueConfig) else QueueConfig(q) for q in queues]
        if not configs:
            raise ValueError("configure at least one queue")
        self.host = host
        self.namespace = Namespace(configs)
        self._handler = _ReactorHandler(self.namespace, host, port)
        self._injector = EventInjector()
        self._thread: threading.Thread | None = None
        self.failure: BaseException | None = None

    def start(self) -> "ServiceBusEmulator":
        container = Container(self._handler)
        container.selectable(self._injector)
        self._thread = threading.Thread(target=self._run, args=(container,), name="servicebus-emulator", daemon=True)
        self._thread.start()
        if not self._handler.ready.wait(READY_TIMEOUT_SECONDS):
            raise RuntimeError("the Service Bus emulator did not start listening")
        self._raise_if_crashed()
        return self

    def _run(self, container: Container) -> None:
        try:
            container.run()
        except BaseException as exc:  # surfaced by start()/stop(), so a test cannot pass on a dead broker
            log.exception("the Service Bus emulator stopped on an error")
            self.failure = exc
        finally:
            self._handler.ready.set()

    def _raise_if_crashed(self) -> None:
        if self.failure is not None:
            raise RuntimeError("the Service Bus emulator failed; see the log") from self.failure

    def stop(self) -> None:
        """Stop listening and drop every connection. Raises if the broker thread failed while running."""
        if self._thread is None:
            return
        self._injector.trigger(ApplicationEvent("stop_emulator"))
        self._thread.join(READY_TIMEOUT_SECONDS)
        self._injector.close()
        self._thread = None
        self._raise_if_crashed()

    @property
    def port(self) -> int:
        assert self._handler.bound_port is not None, "start() first"
        return self._handler.bound_port

    @property
    def fully_qualified_namespace(self) -> str:
        """For `ServiceBusClient(fqns, credential, use_tls=False)` (identity-based connections)."""
        return f"{self.host}:{self.port}"

    @property
    def connection_string(self) -> str:
        return (
            f"Endpoint=sb://{self.host}:{self.port};SharedAccessKeyName=k;SharedAccessKey=x;"
            "UseDevelopmentEmulator=true"
        )

    # ----- inspection (read-only) ----------------------------------------------------------------
    def _entity(self, queue: str, dead_letter: bool = False) -> Entity:
        entity = self.namespace.resolve(queue + ("/$deadletterqueue" if dead_letter else ""))
        if entity is None:
            raise KeyError(f"no queue {queue!r} is configured")
        return entity

    def active_count(self, queue: str) -> int:
        """Messages waiting to be delivered (not locked, not scheduled for later)."""
        with self.namespace.lock:
            return self._entity(queue).active_count

    def locked_count(self, queue: str) -> int:
        with self.namespace.lock:
            return self._entity(queue).locked_count

    def scheduled_count(self, queue: str, within_seconds: float | None = None) -> int:
        """Messages scheduled for later; with within_seconds, only those due that soon."""
        with self.namespace.lock:
            entity = self._entity(queue)
            if within_seconds is None:
                return entity.scheduled_count
            return entity.scheduled_before(time.time() + within_seconds)

    def dead_letter_count(self, queue: str) -> int:
        """Messages held by the queue's dead-letter sub-queue, in any state."""
        with self.namespace.lock:
            return self._entity(queue, dead_letter=True).message_count

    def message_count(self, queue: str) -> int:
        """Messages held by the queue itself, in any state (active, locked, scheduled)."""
        with self.namespace.lock:
            return self._entity(queue).message_count

    def messages_seen(self, queue: str, dead_letter: bool = False) -> list[SeenMessage]:
        """Every message the entity accepted, in order (duplicates dropped are not in it)."""
        with self.namespace.lock:
            return list(self._entity(queue, dead_letter).seen)

    def reorder_deliveries(self, queue: str, seed: int | None = 0) -> None:
        """Deliver the queue's available messages in a seeded random order rather than oldest first,
        as a partitioned queue or competing consumers do (None: oldest first again)."""
        with self.namespace.lock:
            self._entity(queue).shuffle = None if seed is None else random.Random(seed)

    def reordered(self, queue: str) -> int:
        """Deliveries that overtook an older available message."""
        with self.namespace.lock:
            return self._entity(queue).reordered

    def duplicates_dropped(self, queue: str) -> int:
        with self.namespace.lock:
            return self._entity(queue).duplicates_dropped

    def slow_sends(self, seconds: float) -> None:
        """Store and accept each message transfer `seconds` after it arrives, as a namespace under load
        answers late (0: at once again). Senders go on sending meanwhile."""
        with self.namespace.lock:
            self.namespace.send_delay_seconds = max(0.0, seconds)

    def refuse_sends(self, count: int) -> None:
        """Reject the next `count` message transfers with com.microsoft:server-busy, as a throttled
        namespace does (the SDK raises ServiceBusServerBusyError after its own retries)."""
        with self.namespace.lock:
            self.namespace.sends_to_refuse = max(0, count)

    def transfers_received(self, queue: str) -> int:
        """AMQP transfers sent to the queue; a ServiceBusMessageBatch counts once."""
        with self.namespace.lock:
            return self._entity(queue).transfers_received


@contextlib.contextmanager
def run_servicebus_emulator(
    queues: Iterable[str | QueueConfig] = ("reconcile",), host: str = "127.0.0.1", port: int = 0
) -> Iterator[ServiceBusEmulator]:
    """Start the stand-in on loopback (port 0: an ephemeral port) for the duration of the block."""
    emulator = ServiceBusEmulator(queues, host, port).start()
    try:
        yield emulator
    finally:
        emulator.stop()
