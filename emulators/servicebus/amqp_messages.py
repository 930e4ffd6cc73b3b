"""AMQP message handling the broker needs: decoding what senders transfer (single messages and the
SDK's batch envelopes), and stamping the broker-owned fields on what it delivers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from proton import Data, Described, Message, symbol, timestamp, ubyte, uint, ulong

if TYPE_CHECKING:
    from .entities import StoredMessage

SEQUENCE_NUMBER = symbol("x-opt-sequence-number")
ENQUEUED_TIME = symbol("x-opt-enqueued-time")
LOCKED_UNTIL = symbol("x-opt-locked-until")
SCHEDULED_ENQUEUE_TIME = symbol("x-opt-scheduled-enqueue-time")
MESSAGE_STATE = symbol("x-opt-message-state")
DEAD_LETTER_REASON = "DeadLetterReason"
DEAD_LETTER_ERROR_DESCRIPTION = "DeadLetterErrorDescription"
MESSAGE_STATE_SCHEDULED = 2

_HEADER_SECTION = ulong(0x70)
_DATA_SECTION = ulong(0x75)
# Section descriptor codes an encoded message can start with (header ... footer, AMQP 1.0 §3.2).
_MESSAGE_SECTION_CODES = range(0x70, 0x79)


@dataclass(frozen=True)
class DeadLetter:
    reason: str | None
    description: str | None


def decode(raw: bytes) -> Message:
    message = Message()
    message.decode(raw)
    if isinstance(message.body, memoryview):
        message.body = bytes(message.body)
    return message


def encode(message: Message) -> bytes:
    return message.encode()


def copy_message(message: Message) -> Message:
    return decode(encode(message))


@dataclass(frozen=True)
class Transfer:
    """What one AMQP transfer carried. `size` is what the message size limit applies to: the encoded
    message, or for a batch the sum of its encoded messages (the envelope is not counted, as the
    SDK's ServiceBusMessageBatch does not count it either)."""

    messages: list[Message]
    size: int


def decode_transfer(raw: bytes) -> Transfer:
    """The SDK sends a ServiceBusMessageBatch as one message (format 0x80013700, which proton's Python
    binding does not expose) whose data sections each hold an encoded message, so a message whose
    every body section is an encoded message is taken to be a batch envelope."""
    sections = _body_data_sections(raw)
    if sections and all(_looks_like_encoded_message(s) for s in sections):
        try:
            return Transfer([decode(section) for section in sections], sum(map(len, sections)))
        except Exception:  # not a batch after all: an application body that looked like one
            pass
    return Transfer([decode(raw)], len(raw))


def _body_data_sections(raw: bytes) -> list[bytes]:
    """The payloads of the message's data sections, in order (proton's Message keeps only one)."""
    sections: list[bytes] = []
    offset = 0
    while offset < len(raw):
        data = Data()
        consumed = data.decode(raw[offset:])
        if consumed <= 0:
            break
        offset += consumed
        data.rewind()
        data.next()
        value = data.get_object()
        if _is_section(value, _DATA_SECTION):
            sections.append(bytes(value.value))
    return sections


def _is_section(value: object, code: ulong) -> bool:
    return isinstance(value, Described) and value.descriptor == code


def _looks_like_encoded_message(section: bytes) -> bool:
    # 0x00 (described) 0x53 (smallulong) <section code>
    return len(section) >= 3 and section[0] == 0x00 and section[1] == 0x53 and section[2] in _MESSAGE_SECTION_CODES


def scheduled_time(message: Message) -> float | None:
    """The x-opt-scheduled-enqueue-time annotation in epoch seconds, if any."""
    value = (message.annotations or {}).get(SCHEDULED_ENQUEUE_TIME)
    return None if value is None else int(value) / 1000.0


def dead_lettered(message: Message, reason: DeadLetter) -> Message:
    """A copy carrying the dead-letter reason and description as application properties, which is
    where the SDK reads them from on a message received from `$deadletterqueue`."""
    moved = copy_message(message)
    properties = dict(moved.properties or {})
    if reason.reason is not None:
        properties[DEAD_LETTER_REASON] = reason.reason
    if reason.description is not None:
        properties[DEAD_LETTER_ERROR_DESCRIPTION] = reason.description
    moved.properties = properties
    return moved


def with_delivery_state(stored: "StoredMessage") -> bytes:
    """The stored message as it goes on the wire: delivery count in the header, broker annotations."""
    message = copy_message(stored.message)
    annotations = dict(message.annotations or {})
    annotations[SEQUENCE_NUMBER] = stored.sequence_number
    annotations[ENQUEUED_TIME] = _timestamp(stored.enqueued_at)
    if stored.locked_until is not None:
        annotations[LOCKED_UNTIL] = _timestamp(stored.locked_until)
    if stored.scheduled_for is not None:
        annotations[MESSAGE_STATE] = MESSAGE_STATE_SCHEDULED
    message.annotations = annotations
    return _encode_with_header(message, stored.delivery_count)


def _encode_with_header(message: Message, delivery_count: int) -> bytes:
    """Proton leaves default header fields out (and the whole header when all are default), but the
    SDK reports `delivery_count` straight from the header: Service Bus always sends it, 0 included."""
    fields = [
        message.durable,
        ubyte(message.priority),
        uint(int(message.ttl * 1000)) if message.ttl else None,
        delivery_count == 0,  # first-acquirer
        uint(delivery_count),
    ]
    header = Data()
    header.put_object(Described(_HEADER_SECTION, fields))
    rest = message.encode()
    first = Data()
    consumed = first.decode(rest)
    first.rewind()
    first.next()
    if _is_section(first.get_object(), _HEADER_SECTION):
        rest = rest[consumed:]
    return header.encode() + rest


def _timestamp(epoch_seconds: float) -> timestamp:
    return timestamp(int(epoch_seconds * 1000))
