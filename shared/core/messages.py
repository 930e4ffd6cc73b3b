"""The queue contract: one small JSON message that says "Entra user X may have changed"."""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Literal, get_args

from .errors import InvalidMessage
from .untrusted_json import parse_untrusted_json

SCHEMA_VERSION = 1
MAX_MESSAGE_BYTES = 4096
Reason = Literal["delta", "assignment", "membership", "notification", "on-demand", "resync", "retry", "escrow"]
REASONS: frozenset[str] = frozenset(get_args(Reason))
_DERIVED_SUFFIXES = re.compile(r"(/retry\d+|/deferred\d+)+$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def is_object_id(value: object) -> bool:
    return isinstance(value, str) and bool(_GUID.match(value))


def failure_key(message_id: str | None, body: bytes | str) -> str:
    """What a message's failure is recorded under: its id; for a message sent without one (the Python
    SDK always sets it, other producers need not), a digest of its body, so two such messages never
    share, or inherit, one record."""
    if message_id:
        return message_id
    raw = body.encode() if isinstance(body, str) else bytes(body)
    return "no-id:" + hashlib.sha256(raw).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class ReconcileMessage:
    """`message_id` is derived from what caused the message, so a re-sent cycle produces the same ids
    and Service Bus duplicate detection drops them. `attempt` counts scheduled retries; `deferrals`
    counts reschedules while the app was quarantined, which never use up attempts."""

    entra_id: str
    reason: Reason
    observed_at: datetime
    message_id: str
    attempt: int = 0
    deferrals: int = 0

    @classmethod
    def new(cls, entra_id: str, reason: Reason, cause: str, observed_at: datetime | None = None) -> "ReconcileMessage":
        """`cause` identifies the event (a delta cursor, a notification, a request id): same cause and
        user → same message_id."""
        digest = hashlib.sha256(f"{entra_id}|{reason}|{cause}".encode()).hexdigest()[:24]
        return cls(
            entra_id=entra_id.lower(),
            reason=reason,
            observed_at=observed_at or datetime.now(timezone.utc),
            message_id=f"{entra_id.lower()}.{reason}.{digest}",
        )

    def retry(self) -> "ReconcileMessage":
        return self._derived(self.attempt + 1, self.deferrals)

    def defer(self) -> "ReconcileMessage":
        """The same message again later, because of quarantine: attempts stay as they are."""
        return self._derived(self.attempt, self.deferrals + 1)

    def _derived(self, attempt: int, deferrals: int) -> "ReconcileMessage":
        base = _DERIVED_SUFFIXES.sub("", self.message_id)
        suffix = (f"/retry{attempt}" if attempt else "") + (f"/deferred{deferrals}" if deferrals else "")
        return replace(self, attempt=attempt, deferrals=deferrals, message_id=base + suffix)

    def to_json(self) -> str:
        return json.dumps(
            {
                "schemaVersion": SCHEMA_VERSION,
                "entraId": self.entra_id,
                "reason": self.reason,
                "observedAt": self.observed_at.isoformat(),
                "attempt": self.attempt,
                **({"deferrals": self.deferrals} if self.deferrals else {}),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, body: bytes | str, message_id: str) -> "ReconcileMessage":
        """Parse and validate a message body; every problem raises InvalidMessage with a clear reason."""
        raw = body.encode() if isinstance(body, str) else bytes(body)
        if len(raw) > MAX_MESSAGE_BYTES:
            raise InvalidMessage(f"message is {len(raw)} bytes; at most {MAX_MESSAGE_BYTES} expected")
        try:
            data = parse_untrusted_json(raw)
        except ValueError as exc:
            raise InvalidMessage(f"message body is not JSON ({exc.__class__.__name__})") from None
        if not isinstance(data, dict):
            raise InvalidMessage("message body must be a JSON object")
        version = data.get("schemaVersion")
        if version != SCHEMA_VERSION:
            # The reason goes to the state store and the failure email: echo a number, never a sender's text.
            shown = repr(version) if version is None or type(version) is int else f"of type {type(version).__name__}"
            raise InvalidMessage(f"unsupported schemaVersion {shown}; expected {SCHEMA_VERSION}")
        entra_id = data.get("entraId")
        if not is_object_id(entra_id):
            raise InvalidMessage("entraId is missing or not an Entra object id (GUID)")
        reason = data.get("reason")
        if reason not in REASONS:
            raise InvalidMessage(f"reason must be one of {sorted(REASONS)}")
        try:
            observed_at = datetime.fromisoformat(str(data.get("observedAt")))
        except ValueError:
            raise InvalidMessage("observedAt is missing or not an ISO 8601 timestamp") from None
        attempt = data.get("attempt", 0)
        if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 0:
            raise InvalidMessage("attempt must be a non-negative integer")
        deferrals = data.get("deferrals", 0)
        if not isinstance(deferrals, int) or isinstance(deferrals, bool) or deferrals < 0:
            raise InvalidMessage("deferrals must be a non-negative integer")
        return cls(entra_id.lower(), reason, observed_at, message_id or "", attempt, deferrals)
