"""Custom metrics through the OpenTelemetry metrics API. Without a MeterProvider (no
APPLICATIONINSIGHTS_CONNECTION_STRING, so shared.telemetry configured nothing) every call is a no-op;
with the Azure Monitor distro they arrive in Application Insights' customMetrics table.

Dimensions are low-cardinality codes (action, status, error code, Graph operation): never a user id,
name or email. The audit records carry the per-user detail."""
from __future__ import annotations

import weakref
from collections import Counter
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

_meter = metrics.get_meter("shared.provisioning")

operations = _meter.create_counter(
    "provisioning.operations", unit="{operation}",
    description="Provisioning operations by action (create, update, ...) and status (success, failure, ...)")
operation_duration = _meter.create_histogram(
    "provisioning.operation.duration", unit="ms", description="Time per user of the batch that reconciled it")
queue_lag = _meter.create_histogram(
    "provisioning.queue_lag", unit="s",
    description="Seconds from when a change was observed to when its message was picked up for provisioning")
permission_set_assignments = _meter.create_counter(
    "provisioning.permission_set_assignments", unit="{assignment}",
    description="Permission set (group) assignments made (change=added) and removed (change=removed) from Entra groups")
cycle_duration = _meter.create_histogram("provisioning.detect_cycle.duration", unit="ms",
                                         description="Duration of one detect cycle")
cycle_messages = _meter.create_counter("provisioning.detect_cycle.messages_sent", unit="{message}",
                                       description="Reconcile messages the detect cycles enqueued")
cycle_users = _meter.create_counter("provisioning.detect_cycle.users_changed", unit="{user}",
                                    description="Users the detect cycles found changed")
quarantine_transitions = _meter.create_counter(
    "provisioning.quarantine.transitions", unit="{transition}",
    description="Quarantine entered, reason changed or lifted, by reason (auth, failure_ratio)")
quarantine_deferrals = _meter.create_counter(
    "provisioning.quarantine.deferrals", unit="{message}",
    description="Messages rescheduled instead of reconciled because the app was quarantined")


def record_quarantine_transition(event: str, reason: str) -> None:
    quarantine_transitions.add(1, {"event": event, "reason": reason})


def record_quarantine_deferral(reason: str) -> None:
    quarantine_deferrals.add(1, {"reason": reason})


def record_operation(action: str, status: str, error_code: str | None, duration_ms: float) -> None:
    attributes = {"action": action, "status": status, "error_code": error_code or ""}
    operations.add(1, attributes)
    operation_duration.record(duration_ms, attributes)


def record_permission_set_assignments(added: int, removed: int) -> None:
    if added:
        permission_set_assignments.add(added, {"change": "added"})
    if removed:
        permission_set_assignments.add(removed, {"change": "removed"})


def record_cycle(users_changed: int, messages_sent: int, full_sync: bool, duration_ms: float) -> None:
    attributes = {"full_sync": full_sync}
    cycle_duration.record(duration_ms, attributes)
    cycle_messages.add(messages_sent, attributes)
    cycle_users.add(users_changed, attributes)


def record_queue_lag(observed_at: datetime, reason: str) -> None:
    """Now minus the message's observedAt. Retries keep observedAt, so their backoff counts as lag:
    the figure says how far behind Entra the org is, not how long a message waited."""
    if observed_at.tzinfo is None:  # the message contract allows a timestamp without offset: UTC
        observed_at = observed_at.replace(tzinfo=timezone.utc)
    seconds = (datetime.now(timezone.utc) - observed_at).total_seconds()
    queue_lag.record(max(0.0, seconds), {"reason": reason})


# API calls are counted where they happen (the adapters' counters); these observable counters report
# those totals at each export. Sources are held weakly: tests and the CLI build many containers.
_graph_sources: list["weakref.ref[Counter[str]]"] = []
_salesforce_sources: list["weakref.ref[Any]"] = []


def observe_api_calls(graph_calls: Counter[str], salesforce_calls: Any) -> None:
    """Report `graph_calls` (Graph requests by operation) and `salesforce_calls` (an object with
    `queries`, `writes` and `total` request counts) as the metrics provisioning.graph.calls and
    provisioning.salesforce.calls."""
    _graph_sources.append(weakref.ref(graph_calls))
    _salesforce_sources.append(weakref.ref(salesforce_calls))


def _live(sources: list["weakref.ref[Any]"]) -> list[Any]:
    sources[:] = [s for s in sources if s() is not None]
    return [c for c in (s() for s in sources) if c is not None]


def _graph_observations(_: CallbackOptions) -> Iterable[Observation]:
    return _observations((dict(c) for c in _live(_graph_sources)), "operation")


def _salesforce_observations(_: CallbackOptions) -> Iterable[Observation]:
    counts = ({"query": c.queries, "write": c.writes, "other": c.total - c.queries - c.writes}
              for c in _live(_salesforce_sources))
    return _observations(counts, "kind")


def _observations(sources: Iterable[Mapping[str, int]], dimension: str) -> list[Observation]:
    totals: Counter[str] = Counter()
    for counts in sources:
        totals.update(counts)
    return [Observation(n, {dimension: name}) for name, n in sorted(totals.items())]


_meter.create_observable_counter("provisioning.graph.calls", [_graph_observations], unit="{request}",
                                 description="Microsoft Graph requests by operation")
_meter.create_observable_counter("provisioning.salesforce.calls", [_salesforce_observations], unit="{request}",
                                 description="Salesforce API requests (what counts against the org's daily limit)")
