"""The broker's state: queues, their dead-letter sub-queues, locks, schedules and duplicate detection.

Pure Python and single-threaded by design: the AMQP peer calls it from its reactor thread while holding
`Namespace.lock`, and the test-facing inspection helpers take the same lock. Time is always passed in
(epoch seconds) so the rules here do not depend on a clock.
"""
from __future__ import annotations

import bisect
import heapq
import itertools
import random
import threading
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from proton import Message

from .amqp_messages import DeadLetter, dead_lettered, with_delivery_state

DEAD_LETTER_SUFFIX = "/$deadletterqueue"
MAX_DELIVERY_COUNT_EXCEEDED = "MaxDeliveryCountExceeded"


@dataclass(frozen=True)
class QueueConfig:
    """What a queue is created with. `duplicate_detection_window` is in seconds; None turns it off."""

    name: str
    max_delivery_count: int = 10
    lock_duration: float = 30.0
    duplicate_detection_window: float | None = 600.0

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"queue name {self.name!r} must be non-empty and contain no '/'")
        if self.max_delivery_count < 1:
            raise ValueError("max_delivery_count must be at least 1")
        if self.lock_duration <= 0:
            raise ValueError("lock_duration must be positive")


@dataclass(eq=False)
class StoredMessage:
    """One message held by an entity. `delivery_count` counts failed deliveries (the AMQP header value:
    0 on the first delivery, +1 per abandon or lost lock)."""

    sequence_number: int
    message: Message
    enqueued_at: float
    delivery_count: int = 0
    scheduled_for: float | None = None
    lock_token: uuid.UUID | None = None
    locked_until: float | None = None


@dataclass(frozen=True)
class SeenMessage:
    """A record of one message the entity accepted, for tests."""

    message_id: str | None
    sequence_number: int
    body: bytes | None
    application_properties: dict


class LockLost(Exception):
    """The lock token is unknown: already settled, or its lock expired."""


class Entity:
    """A queue or a dead-letter sub-queue. Active messages are delivered in sequence-number order;
    a message whose lock is lost or abandoned goes back to its place."""

    def __init__(self, path: str, config: QueueConfig, dead_letter: "Entity | None" = None) -> None:
        self.path = path
        self.config = config
        self.dead_letter = dead_letter
        self._sequence = itertools.count(1)
        self._messages: dict[int, StoredMessage] = {}
        self._available: list[int] = []  # sorted sequence numbers
        self._locked: dict[uuid.UUID, StoredMessage] = {}
        self._scheduled: list[tuple[float, int]] = []  # heap of (due, sequence number)
        self._recent_ids: dict[str, float] = {}
        self.seen: list[SeenMessage] = []
        self.duplicates_dropped = 0
        self.transfers_received = 0  # AMQP transfers that enqueued here (a batch is one)
        # Service Bus orders delivery only within a session or partition; with `shuffle` set, each
        # delivery takes a random available message instead of the oldest (see reorder_deliveries).
        self.shuffle: random.Random | None = None
        self.reordered = 0  # deliveries that overtook an older available message

    # ----- enqueue -------------------------------------------------------------------------------
    def enqueue(self, message: Message, now: float, scheduled_for: float | None = None) -> int | None:
        """Store a sent message; returns its sequence number, or None when duplicate detection
        dropped it. A message whose scheduled time is in the future waits until then."""
        if self._is_duplicate(message.id, now):
            self.duplicates_dropped += 1
            return None
        return self._store(message, now, scheduled_for=scheduled_for)

    def _is_duplicate(self, message_id: object, now: float) -> bool:
        window = self.config.duplicate_detection_window
        if window is None or message_id is None:
            return False
        key = str(message_id)
        seen_at = self._recent_ids.get(key)
        if seen_at is not None and now - seen_at < window:
            return True
        self._recent_ids[key] = now
        return False

    def _store(self, message: Message, now: float, *, scheduled_for: float | None = None,
               sequence_number: int | None = None, delivery_count: int = 0) -> int:
        number = sequence_number if sequence_number is not None else next(self._sequence)
        stored = StoredMessage(number, message, now, delivery_count=delivery_count)
        self._messages[number] = stored
        body = message.body if isinstance(message.body, (bytes, memoryview)) else None
        self.seen.append(SeenMessage(
            None if message.id is None else str(message.id), number,
            None if body is None else bytes(body), dict(message.properties or {}),
        ))
        if scheduled_for is not None and scheduled_for > now:
            stored.scheduled_for = scheduled_for
            heapq.heappush(self._scheduled, (scheduled_for, number))
        else:
            bisect.insort(self._available, number)
        return number

    def cancel_scheduled(self, sequence_numbers: list[int]) -> None:
        for number in sequence_numbers:
            stored = self._messages.get(number)
            if stored is not None and stored.scheduled_for is not None:
                del self._messages[number]
        self._scheduled = [(due, n) for due, n in self._scheduled if n in self._messages]
        heapq.heapify(self._scheduled)

    # ----- delivery ------------------------------------------------------------------------------
    def has_available(self) -> bool:
        return bool(self._available)

    def take_next(self, now: float, *, lock: bool) -> tuple[StoredMessage, bytes]:
        """Remove the next active message: lock it (peek-lock) or delete it (receive-and-delete).
        Returns the stored record and the encoded message to put on the wire."""
        index = self.shuffle.randrange(len(self._available)) if self.shuffle is not None else 0
        self.reordered += index > 0
        number = self._available.pop(index)
        stored = self._messages[number]
        if lock:
            stored.lock_token = uuid.uuid4()
            stored.locked_until = now + self.config.lock_duration
            self._locked[stored.lock_token] = stored
        else:
            del self._messages[number]
        return stored, with_delivery_state(stored)

    def release(self, token: uuid.UUID) -> None:
        """The receiver gave the message back unprocessed (AMQP released): no delivery attempt counted."""
        stored = self._unlock(token)
        bisect.insort(self._available, stored.sequence_number)

    def complete(self, token: uuid.UUID) -> None:
        stored = self._unlock(token)
        del self._messages[stored.sequence_number]

    def abandon(self, token: uuid.UUID, now: float) -> None:
        self._failed_delivery(self._unlock(token), now)

    def dead_letter_message(self, token: uuid.UUID, reason: str | None, description: str | None, now: float) -> None:
        stored = self._unlock(token)
        self._move_to_dead_letter(stored, DeadLetter(reason, description), now)

    def renew_lock(self, token: uuid.UUID, now: float) -> float:
        stored = self._locked.get(token)
        if stored is None:
            raise LockLost(str(token))
        stored.locked_until = now + self.config.lock_duration
        return stored.locked_until

    def _unlock(self, token: uuid.UUID) -> StoredMessage:
        stored = self._locked.pop(token, None)
        if stored is None:
            raise LockLost(str(token))
        stored.lock_token = stored.locked_until = None
        return stored

    def _failed_delivery(self, stored: StoredMessage, now: float) -> None:
        stored.delivery_count += 1
        if self.dead_letter is not None and stored.delivery_count >= self.config.max_delivery_count:
            description = f"Message could not be consumed after {self.config.max_delivery_count} delivery attempts."
            self._move_to_dead_letter(stored, DeadLetter(MAX_DELIVERY_COUNT_EXCEEDED, description), now)
        else:
            bisect.insort(self._available, stored.sequence_number)

    def _move_to_dead_letter(self, stored: StoredMessage, reason: DeadLetter, now: float) -> None:
        del self._messages[stored.sequence_number]
        if self.dead_letter is None:  # settling a dead-letter message as dead-letter just removes it
            return
        self.dead_letter._store(
            dead_lettered(stored.message, reason), now,
            sequence_number=stored.sequence_number, delivery_count=stored.delivery_count,
        )

    # ----- time ----------------------------------------------------------------------------------
    def advance(self, now: float) -> bool:
        """Release expired locks and enqueue due scheduled messages. True when something became
        available."""
        changed = False
        for token, stored in list(self._locked.items()):
            if stored.locked_until is not None and stored.locked_until <= now:
                self._failed_delivery(self._unlock(token), now)
                changed = True
        while self._scheduled and self._scheduled[0][0] <= now:
            _, number = heapq.heappop(self._scheduled)
            stored = self._messages.get(number)
            if stored is not None:
                # a scheduled message counts as enqueued when it becomes active
                stored.enqueued_at, stored.scheduled_for = stored.scheduled_for, None
                bisect.insort(self._available, number)
                changed = True
        return changed

    def next_deadline(self) -> float | None:
        deadlines = [s.locked_until for s in self._locked.values() if s.locked_until is not None]
        if self._scheduled:
            deadlines.append(self._scheduled[0][0])
        return min(deadlines, default=None)

    # ----- inspection ----------------------------------------------------------------------------
    def peek(self, from_sequence_number: int, count: int) -> list[bytes]:
        """Messages from a sequence number on, whatever their state, without locking them."""
        numbers = sorted(n for n in self._messages if n >= from_sequence_number)[:count]
        return [with_delivery_state(self._messages[n]) for n in numbers]

    @property
    def active_count(self) -> int:
        return len(self._available)

    @property
    def locked_count(self) -> int:
        return len(self._locked)

    @property
    def scheduled_count(self) -> int:
        return sum(1 for s in self._messages.values() if s.scheduled_for is not None)

    def scheduled_before(self, deadline: float) -> int:
        """Scheduled messages due by `deadline` (epoch seconds)."""
        return sum(1 for s in self._messages.values() if s.scheduled_for is not None and s.scheduled_for <= deadline)

    @property
    def message_count(self) -> int:
        return len(self._messages)


class Namespace:
    """All entities of one emulator. Addresses are matched case-insensitively, as Service Bus does."""

    def __init__(self, queues: list[QueueConfig]) -> None:
        self.lock = threading.RLock()
        self.queues: dict[str, Entity] = {}
        self.send_delay_seconds = 0.0  # fault knobs for message transfers, see ServiceBusEmulator
        self.sends_to_refuse = 0
        for config in queues:
            key = config.name.lower()
            if key in self.queues:
                raise ValueError(f"queue {config.name!r} is configured twice")
            dead_letter = Entity(config.name + "/$DeadLetterQueue", config)
            self.queues[key] = Entity(config.name, config, dead_letter)

    def resolve(self, address: str | None) -> Entity | None:
        """`amqps://host:port/<queue>[/$deadletterqueue]`, or the bare path, to its entity."""
        if not address:
            return None
        path = urlsplit(address).path if "://" in address else address
        path = path.strip("/").lower()
        dead_letter = path.endswith(DEAD_LETTER_SUFFIX)
        if dead_letter:
            path = path[: -len(DEAD_LETTER_SUFFIX)]
        queue = self.queues.get(path)
        if queue is None:
            return None
        return queue.dead_letter if dead_letter else queue

    def entities(self) -> list[Entity]:
        return [e for q in self.queues.values() for e in (q, q.dead_letter) if e is not None]

    def advance(self, now: float) -> list[Entity]:
        """Apply the clock to every entity; returns those with newly available messages."""
        return [e for e in self.entities() if e.advance(now)]

    def next_deadline(self) -> float | None:
        return min((d for e in self.entities() if (d := e.next_deadline()) is not None), default=None)


__all__ = ["QueueConfig", "Namespace", "Entity", "StoredMessage", "SeenMessage", "LockLost"]
