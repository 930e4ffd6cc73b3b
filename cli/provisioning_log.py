"""Collect the provisioning log (the audit records the services emit) and summarise it the way
Entra's provisioning summary does."""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from shared.services import audit


class ProvisioningLog(logging.Handler):
    """Attach to the audit logger to keep every structured record of a run."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.records: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        data = audit.audit_fields(record)
        if data is not None:
            self.records.append(data)

    def __enter__(self) -> "ProvisioningLog":
        audit.audit_log.addHandler(self)
        audit.audit_log.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc: object) -> None:
        audit.audit_log.removeHandler(self)

    def operations(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("kind") == "operation"]

    def summary(self) -> "RunSummary":
        ops = self.operations()
        final: dict[str, dict[str, Any]] = {}
        for op in ops:  # a user retried after a transient failure counts once, by its last outcome
            final[op["entra_id"]] = op
        outcome = Counter()
        failures = Counter()
        for op in final.values():
            if op["status"] == "failure":
                failures[op["error_code"] or "unknown"] += 1
                outcome["failed"] += 1
            elif op["status"] == "retrying":
                outcome["retrying"] += 1
            elif op["action"] in ("create", "update", "deactivate", "reactivate"):
                outcome[{"create": "created", "update": "updated", "deactivate": "deactivated",
                         "reactivate": "reactivated"}[op["action"]]] += 1
            else:
                outcome["skipped"] += 1
        granted = Counter()
        for op in ops:  # every applied change counts, retried users' included
            if op["status"] == "success":
                granted["added"] += len([k for k in (op.get("permission_sets_added") or "").split(",") if k])
                granted["removed"] += len([k for k in (op.get("permission_sets_removed") or "").split(",") if k])
        return RunSummary(users=len(final), outcome=outcome, failures=failures,
                          transient_retries=sum(1 for op in ops if op["status"] == "retrying"),
                          permission_set_assignments=granted)


@dataclass
class RunSummary:
    users: int
    outcome: Counter
    failures: Counter
    transient_retries: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    permission_set_assignments: Counter = field(default_factory=Counter)  # added / removed
