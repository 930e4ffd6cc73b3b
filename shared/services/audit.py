"""The provisioning log: one structured record per operation and per cycle, like Entra's provisioning
logs. Emitted on this module's logger with each field as its own `extra` attribute (plus
`audit_kind`), so Application Insights gets them as separate custom dimensions
(`customDimensions.entra_id`, ...) and local tools can collect them with `audit_fields`. Ids and field
names only: never names, emails or secrets."""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from . import metrics

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
    # permission set assignments made and removed, by target key ("PermissionSet:Sales_Ops")
    permission_sets_added: tuple[str, ...] = ()
    permission_sets_removed: tuple[str, ...] = ()

    def emit(self) -> None:
        level = logging.WARNING if self.status == "failure" else logging.INFO
        fields = f" fields={','.join(self.modified_properties)}" if self.modified_properties else ""
        granted = "".join(f" {sign}{','.join(keys)}" for sign, keys in
                          (("+", self.permission_sets_added), ("-", self.permission_sets_removed)) if keys)
        error = f" error={self.error_code}" if self.error_code else ""
        audit_log.log(
            level,
            "%s %s entra=%s sf=%s%s%s%s",
            self.action, self.status, self.entra_id, self.salesforce_id or "-", fields, granted, error,
            extra={"audit_kind": "operation", **asdict(self), "modified_properties": ",".join(self.modified_properties),
                   "permission_sets_added": ",".join(self.permission_sets_added),
                   "permission_sets_removed": ",".join(self.permission_sets_removed)},
        )
        metrics.record_operation(self.action, self.status, self.error_code, self.duration_ms)
        if self.status == "success":
            metrics.record_permission_set_assignments(len(self.permission_sets_added), len(self.permission_sets_removed))


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
            extra={"audit_kind": "cycle", **{k: v for k, v in asdict(self).items() if k != "counts"}, **self.counts},
        )
        metrics.record_cycle(self.users_changed, self.messages_sent, self.full_sync, self.duration_ms)


_FIELDS = {
    "operation": tuple(OperationRecord.__dataclass_fields__),
    "cycle": tuple(f for f in CycleRecord.__dataclass_fields__ if f != "counts"),
}


def audit_fields(record: logging.LogRecord) -> dict[str, Any] | None:
    """The structured fields of an audit log record (None for any other record)."""
    kind = getattr(record, "audit_kind", None)
    if kind not in _FIELDS:
        return None
    return {"kind": kind, **{name: getattr(record, name, None) for name in _FIELDS[kind]}}
