"""`<entity>/$management` operations the SDK uses on a queue: peek, renew-lock, schedule and
cancel, and settlement by lock token (the SDK's fallback when the receiving link is gone)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from proton import UNDESCRIBED, Array, Data, Message, timestamp

from . import amqp_messages
from .entities import Entity, LockLost

VENDOR = "com.microsoft:"


@dataclass
class ManagementResponse:
    status: int
    description: str
    body: Any = None
    error_condition: str | None = None
    status_field: str = "statusCode"  # `$cbs` answers with "status-code"

    def to_message(self, *, correlation_id: object, address: str | None) -> Message:
        description_field = "status-description" if self.status_field == "status-code" else "statusDescription"
        properties: dict[str, Any] = {self.status_field: self.status, description_field: self.description}
        if self.error_condition:
            properties["errorCondition"] = self.error_condition
        return Message(body=self.body, correlation_id=correlation_id, address=address, properties=properties)


def _values(value: Any) -> list:
    return list(value.elements) if isinstance(value, Array) else list(value or [])


def _lock_token(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _ok(body: Any = None) -> ManagementResponse:
    return ManagementResponse(200, "OK", body if body is not None else {})


def _peek(entity: Entity, body: dict, now: float) -> ManagementResponse:
    found = entity.peek(int(body.get("from-sequence-number", 0)), int(body.get("message-count", 1)))
    if not found:
        return ManagementResponse(204, "No messages to peek")
    return _ok({"messages": [{"message": wire} for wire in found]})


def _renew_lock(entity: Entity, body: dict, now: float) -> ManagementResponse:
    expirations = [entity.renew_lock(_lock_token(t), now) for t in _values(body.get("lock-tokens"))]
    return _ok({"expirations": Array(UNDESCRIBED, Data.TIMESTAMP, *(timestamp(int(e * 1000)) for e in expirations))})


def _schedule(entity: Entity, body: dict, now: float) -> ManagementResponse:
    numbers = []
    for item in body.get("messages", []):
        message = amqp_messages.decode(bytes(item["message"]))
        number = entity.enqueue(message, now, scheduled_for=amqp_messages.scheduled_time(message))
        numbers.append(number if number is not None else 0)
    return _ok({"sequence-numbers": Array(UNDESCRIBED, Data.LONG, *numbers)})


def _cancel_scheduled(entity: Entity, body: dict, now: float) -> ManagementResponse:
    entity.cancel_scheduled([int(n) for n in _values(body.get("sequence-numbers"))])
    return _ok()


def _update_disposition(entity: Entity, body: dict, now: float) -> ManagementResponse:
    status = str(body.get("disposition-status"))
    for value in _values(body.get("lock-tokens")):
        token = _lock_token(value)
        if status == "completed":
            entity.complete(token)
        elif status == "abandoned":
            entity.abandon(token, now)
        elif status == "suspended":
            entity.dead_letter_message(token, body.get("deadletter-reason"), body.get("deadletter-description"), now)
        else:
            return ManagementResponse(501, f"disposition-status {status!r} is not supported by this emulator",
                                      error_condition="amqp:not-implemented")
    return _ok()


_OPERATIONS = {
    VENDOR + "peek-message": _peek,
    VENDOR + "renew-lock": _renew_lock,
    VENDOR + "schedule-message": _schedule,
    VENDOR + "cancel-scheduled-message": _cancel_scheduled,
    VENDOR + "update-disposition": _update_disposition,
}


def handle_management(entity: Entity, operation: str, body: Any, now: float) -> ManagementResponse:
    handler = _OPERATIONS.get(operation)
    if handler is None:
        return ManagementResponse(501, f"operation {operation!r} is not supported by this emulator",
                                  error_condition="amqp:not-implemented")
    if not isinstance(body, dict):
        return ManagementResponse(400, "the request body must be a map", error_condition=VENDOR + "argument-error")
    try:
        return handler(entity, body, now)
    except LockLost as exc:
        return ManagementResponse(410, f"The lock supplied is invalid: {exc}", error_condition=VENDOR + "message-lock-lost")
    except (KeyError, TypeError, ValueError) as exc:
        return ManagementResponse(400, f"bad {operation} request: {exc}", error_condition=VENDOR + "argument-error")
