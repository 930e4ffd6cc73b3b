"""The AMQP 1.0 side of the stand-in: a proton reactor handler that speaks what azure-servicebus
(pure-Python AMQP) expects from Service Bus: SASL ANONYMOUS, claims-based auth on `$cbs`, queue and
dead-letter-queue links, peek-lock settlement outcomes, and `<entity>/$management` requests."""
from __future__ import annotations

import logging
import time
import uuid
from typing import Callable

from proton import Condition, Delivery, Endpoint, Handler, Link, Message, Terminus

from . import amqp_messages
from .entities import Entity, LockLost, Namespace
from .management import ManagementResponse, handle_management

log = logging.getLogger(__name__)

CBS_NODE = "$cbs"
MANAGEMENT_SUFFIX = "/$management"
MAX_MESSAGE_BYTES = 256 * 1024  # the Standard tier's limit; the SDK sizes its batches from it
LINK_CREDIT = 500
LOCK_LOST_CONDITION = "com.microsoft:message-lock-lost"
SERVER_BUSY_CONDITION = "com.microsoft:server-busy"


def _is_request_node(address: str | None) -> bool:
    return bool(address) and (address == CBS_NODE or address.lower().endswith(MANAGEMENT_SUFFIX))


def _info_value(info: dict | None, key: str) -> str | None:
    """A value of a Rejected outcome's info map, whose keys may arrive as symbols or strings."""
    for name, value in (info or {}).items():
        if str(name) == key:
            return None if value is None else str(value)
    return None


class ServiceBusPeer(Handler):
    """Runs on the reactor thread; every entry point holds `namespace.lock`."""

    def __init__(self, namespace: Namespace, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.namespace = namespace
        self.clock = clock
        self.container = None
        self._consumers: dict[Link, Entity] = {}  # our sender links, by the entity they deliver from
        self._producers: dict[Link, Entity] = {}  # our receiver links, by the entity they enqueue to
        self._reply_links: dict[tuple[object, str], Link] = {}  # (connection, node) -> sender link
        self._pending_replies: dict[Link, list[Message]] = {}
        self._timer_at: float | None = None

    # ----- connection setup ----------------------------------------------------------------------
    def on_connection_bound(self, event) -> None:
        event.transport.sasl().allowed_mechs("ANONYMOUS")

    def on_connection_remote_open(self, event) -> None:
        if event.connection.state & Endpoint.LOCAL_UNINIT:
            event.connection.open()

    def on_session_remote_open(self, event) -> None:
        if event.session.state & Endpoint.LOCAL_UNINIT:
            event.session.open()

    def on_link_remote_open(self, event) -> None:
        link = event.link
        if not link.state & Endpoint.LOCAL_UNINIT:
            return
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        with self.namespace.lock:
            if link.is_receiver:
                self._open_incoming(link)
            else:
                self._open_outgoing(link)

    def _open_incoming(self, link: Link) -> None:
        """A client sender: requests to `$cbs` / `$management`, or messages for an entity."""
        address = link.remote_target.address
        if not _is_request_node(address):
            entity = self.namespace.resolve(address)
            if entity is None:
                self._refuse(link, address)
                return
            self._producers[link] = entity
            link.max_message_size = MAX_MESSAGE_BYTES
        link.open()
        link.flow(LINK_CREDIT)

    def _open_outgoing(self, link: Link) -> None:
        """A client receiver: the reply side of a request node, or a consumer of an entity."""
        address = link.remote_source.address
        if _is_request_node(address):
            self._reply_links[(link.connection, address.lower())] = link
            link.open()
            return
        entity = self.namespace.resolve(address)
        if entity is None:
            self._refuse(link, address)
            return
        self._consumers[link] = entity
        link.open()

    @staticmethod
    def _refuse(link: Link, address: str | None) -> None:
        # As Service Bus does: answer the attach with a null terminus, then detach with the reason.
        (link.target if link.is_receiver else link.source).type = Terminus.UNSPECIFIED
        link.open()
        link.condition = Condition("amqp:not-found", f"The messaging entity '{address}' could not be found.")
        link.close()

    # ----- teardown ------------------------------------------------------------------------------
    def on_link_remote_close(self, event) -> None:
        with self.namespace.lock:
            self._forget_link(event.link)
        if not event.link.state & Endpoint.LOCAL_CLOSED:
            event.link.close()

    def on_session_remote_close(self, event) -> None:
        if not event.session.state & Endpoint.LOCAL_CLOSED:
            event.session.close()

    def on_connection_remote_close(self, event) -> None:
        if not event.connection.state & Endpoint.LOCAL_CLOSED:
            event.connection.close()

    def on_transport_closed(self, event) -> None:
        connection = event.connection
        with self.namespace.lock:
            for link in [*self._consumers, *self._producers, *self._pending_replies]:
                if link.connection == connection:
                    self._forget_link(link)
            for key in [k for k in self._reply_links if k[0] == connection]:
                del self._reply_links[key]

    def _forget_link(self, link: Link) -> None:
        # Messages still locked by a consumer that went away stay locked until their lock expires,
        # as in Service Bus.
        self._consumers.pop(link, None)
        self._producers.pop(link, None)
        self._pending_replies.pop(link, None)
        for key in [k for k, v in self._reply_links.items() if v == link]:
            del self._reply_links[key]

    # ----- flow and deliveries -------------------------------------------------------------------
    def on_link_flow(self, event) -> None:
        link = event.link
        with self.namespace.lock:
            if link in self._consumers:
                self._pump(link)
                if link.drain_mode:
                    link.drained()
                self.arm_timer()
            elif link in self._pending_replies:
                self._flush_replies(link)

    def on_delivery(self, event) -> None:
        delivery = event.delivery
        with self.namespace.lock:
            if delivery.link.is_receiver:
                self._on_transfer(delivery)
            elif delivery.updated:
                self._on_outcome(delivery)
            self.arm_timer()

    def _on_transfer(self, delivery: Delivery) -> None:
        link = delivery.link
        if not delivery.readable or delivery.partial:
            return
        raw = link.recv(delivery.pending)
        link.advance()
        link.flow(1)
        if link in self._producers:
            self._enqueue(delivery, self._producers[link], raw)
        elif _is_request_node(link.remote_target.address):
            delivery.update(Delivery.ACCEPTED)
            delivery.settle()
            self._answer_request(link, amqp_messages.decode(raw))
        else:  # sent on a link that was refused before the sender saw the refusal
            self._reject(delivery, "amqp:not-found", f"The messaging entity '{link.remote_target.address}' could not be found.")

    def _enqueue(self, delivery: Delivery, entity: Entity, raw: bytes) -> None:
        try:
            transfer = amqp_messages.decode_transfer(raw)
        except Exception as exc:  # a transfer proton cannot decode is the sender's fault
            self._reject(delivery, "amqp:decode-error", f"The message could not be decoded: {exc}")
            return
        if transfer.size > MAX_MESSAGE_BYTES:
            self._reject(delivery, "amqp:link:message-size-exceeded",
                         f"The message is {transfer.size} bytes; the limit is {MAX_MESSAGE_BYTES}.")
            return
        if self.namespace.sends_to_refuse > 0:
            self.namespace.sends_to_refuse -= 1
            self._reject(delivery, SERVER_BUSY_CONDITION, "The request was terminated because the entity is being "
                         "throttled (the stand-in refusing sends on request).")
            return
        if self.namespace.send_delay_seconds > 0 and self.container is not None:
            self.container.schedule(self.namespace.send_delay_seconds, _DelayedTransfer(self, delivery, entity, transfer))
            return
        self.accept_transfer(delivery, entity, transfer)

    def accept_transfer(self, delivery: Delivery, entity: Entity, transfer: amqp_messages.Transfer) -> None:
        now = self.clock()
        entity.transfers_received += 1
        for message in transfer.messages:
            entity.enqueue(message, now, scheduled_for=amqp_messages.scheduled_time(message))
        delivery.update(Delivery.ACCEPTED)
        delivery.settle()
        self._pump_entity(entity)

    @staticmethod
    def _reject(delivery: Delivery, condition: str, description: str) -> None:
        # The info map is never left empty: the SDK indexes the error list's third field, which proton
        # omits when it is null.
        delivery.local.condition = Condition(condition, description, {"emulator": "servicebus"})
        delivery.update(Delivery.REJECTED)
        delivery.settle()

    def _on_outcome(self, delivery: Delivery) -> None:
        """The consumer settled a peek-locked message. The outcome applied is echoed back settled,
        which is what the SDK waits for (rcv-settle-mode second)."""
        entity = self._consumers.get(delivery.link)
        if entity is None or delivery.link.remote_snd_settle_mode == Link.SND_SETTLED:
            delivery.settle()
            return
        token = delivery.lock_token  # set in _pump (proton's binding reads tags back as text)
        state, remote = delivery.remote_state, delivery.remote
        now = self.clock()
        try:
            if state == Delivery.ACCEPTED:
                entity.complete(token)
            elif state == Delivery.REJECTED:  # dead-letter (the SDK's condition is com.microsoft:dead-letter)
                info = remote.condition.info if remote.condition else None
                entity.dead_letter_message(
                    token,
                    _info_value(info, "DeadLetterReason"),
                    _info_value(info, "DeadLetterErrorDescription")
                    or (remote.condition.description if remote.condition else None),
                    now,
                )
            elif state == Delivery.MODIFIED and remote.undeliverable:
                self._reject(delivery, "amqp:not-implemented", "Deferring messages is not supported by this emulator.")
                return
            elif state == Delivery.MODIFIED and remote.failed:
                entity.abandon(token, now)
                delivery.local.failed = True
            elif state in (Delivery.RELEASED, Delivery.MODIFIED):
                entity.release(token)
            else:
                return  # no terminal outcome yet
        except LockLost:
            self._reject(delivery, LOCK_LOST_CONDITION,
                         "The lock supplied is invalid. Either the lock expired, or the message has already been removed from the queue.")
            return
        delivery.update(state)
        delivery.settle()
        self._pump_entity(entity)

    def _pump_entity(self, entity: Entity) -> None:
        for link, consumed in list(self._consumers.items()):
            if consumed is entity:
                self._pump(link)

    def _pump(self, link: Link) -> None:
        entity = self._consumers[link]
        presettled = link.remote_snd_settle_mode == Link.SND_SETTLED
        now = self.clock()
        while link.credit > 0 and entity.has_available():
            stored, wire = entity.take_next(now, lock=not presettled)
            token = stored.lock_token or uuid.uuid4()
            delivery = link.delivery(token.bytes_le)  # the SDK reads the lock token from the tag
            delivery.lock_token = token
            link.send(wire)
            link.advance()
            if presettled:
                delivery.settle()

    # ----- $cbs and $management ------------------------------------------------------------------
    def _answer_request(self, link: Link, request: Message) -> None:
        node = link.remote_target.address
        operation = str((request.properties or {}).get("operation", ""))
        if node == CBS_NODE:
            # Any token is accepted: the emulator checks nothing, like the Development emulator.
            response = ManagementResponse(202, "Accepted", status_field="status-code")
        else:
            entity = self.namespace.resolve(node[: -len(MANAGEMENT_SUFFIX)])
            if entity is None:
                response = ManagementResponse(404, f"The messaging entity '{node}' could not be found.",
                                              error_condition="amqp:not-found")
            else:
                response = handle_management(entity, operation, request.body, self.clock())
                self._pump_entity(entity)
        reply = response.to_message(correlation_id=request.id, address=request.reply_to)
        reply_link = self._reply_links.get((link.connection, node.lower()))
        if reply_link is None:
            log.warning("no reply link attached for %s; dropping the response", node)
            return
        self._pending_replies.setdefault(reply_link, []).append(reply)
        self._flush_replies(reply_link)

    def _flush_replies(self, link: Link) -> None:
        pending = self._pending_replies.get(link, [])
        while pending and link.credit > 0:
            delivery = link.delivery(uuid.uuid4().bytes)
            link.send(amqp_messages.encode(pending.pop(0)))
            link.advance()
            delivery.settle()

    # ----- time ----------------------------------------------------------------------------------
    def on_timer_task(self, event) -> None:
        with self.namespace.lock:
            self._timer_at = None
            for entity in self.namespace.advance(self.clock()):
                self._pump_entity(entity)
            self.arm_timer()

    def arm_timer(self) -> None:
        """Wake up at the next lock expiry or scheduled enqueue time (one pending timer at a time)."""
        deadline = self.namespace.next_deadline()
        if deadline is None or self.container is None:
            return
        if self._timer_at is not None and self._timer_at <= deadline:
            return
        self._timer_at = deadline
        self.container.schedule(max(0.0, deadline - self.clock()) + 0.005, self)


class _DelayedTransfer(Handler):
    """A transfer the slow-sends knob holds back: stored and accepted when its timer fires."""

    def __init__(self, peer: ServiceBusPeer, delivery: Delivery, entity: Entity, transfer: amqp_messages.Transfer) -> None:
        super().__init__()
        self._peer, self._delivery, self._entity, self._transfer = peer, delivery, entity, transfer

    def on_timer_task(self, event) -> None:
        with self._peer.namespace.lock:
            self._peer.accept_transfer(self._delivery, self._entity, self._transfer)
            self._peer.arm_timer()
