"""The provisioning log: one structured record per operation and per cycle, like Entra's provisioning
logs. Emitted on this module's logger with the record's fields in `extra["audit"]`, so
Application Insights gets them as custom dimensions and local tools can collect them. Ids and field
names only: never names, emails or secrets."""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

audit_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OperationRecord:
    action: str  # create | update | deactivate | reactivate | noop | skip
    status: str  # success | failure | skipped | retrying
    entra_id: str
    salesforce_id: str | None = None
    modified_properties: tuple[str, ...] = ()
    error_code: str | None = None
    reason: str = ""
    message_id: str = ""
    duration_ms: float = 0.0

    def emit(self) -> None:
        level = logging.WARNING if self.status == "failure" else logging.INFO
        fields = f" fields={','.join(self.modified_properties)}" if self.modified_properties else ""
        error = f" error={self.error_code}" if self.error_code else ""
        audit_log.log(
            level,
            "%s %s entra=%s sf=%s%s%s",
            self.action, self.status, self.entra_id, self.salesforce_id or "-", fields, error,
            extra={"audit": {"kind": "operation", **asdict(self)}},
        )


@dataclass(frozen=True, slots=True)
class CycleRecord:
    users_changed: int
    messages_sent: int
    full_sync: bool
    duration_ms: float
    counts: dict[str, Any] = field(default_factory=dict)

    def emit(self) -> None:
        audit_log.info(
            "detect cycle: %d users changed, %d messages sent%s",
            self.users_changed, self.messages_sent, " (full sync)" if self.full_sync else "",
            extra={"audit": {"kind": "cycle", **asdict(self)}},
        )
