"""Convergence under faults at CI size: the scenario of `python -m benchmarks.convergence` at 1,000 users
(Salesforce and Graph faults, an expired session and delta token, a detect cycle and a provisioning
worker killed mid-way, duplicate, stale and reordered messages, tenant changes landing mid-sync), then
Salesforce checked against the product's mapping of the emulator's final Entra state."""
from __future__ import annotations

from benchmarks.convergence.scenario import run_scenario

USERS = 1000

EVERY_FAULT = [
    "salesforce UNABLE_TO_LOCK_ROW", "salesforce REQUEST_LIMIT_EXCEEDED", "salesforce 503", "salesforce 503 (HTML page)",
    "salesforce timeout", "salesforce INVALID_SESSION_ID", "graph 429", "graph 503", "graph delta token expired",
    "graph empty delta page with nextLink", "graph replayed delta object", "reordered deliveries",
    "duplicate messages sent", "stale messages sent", "detect cycle killed before checkpoint",
    "provisioning worker killed mid-batch",
]


async def test_a_tenant_provisioned_under_faults_converges_and_reports_every_failure():
    result = await run_scenario(USERS, seed=7)
    found = result.findings
    assert found.problems() == []  # nothing lost, duplicated, left active, deleted or unreported
    assert found.in_scope == found.converged + found.failed_reported and found.converged > 0.9 * found.in_scope
    # the demo tenant's own mess fails permanently, with the original reasons, in the digest emails
    assert {"REQUIRED_FIELD_MISSING", "DUPLICATE_USERNAME"} <= set(found.dead_lettered) and found.emails >= 1
    assert "MaxDeliveryCountExceeded" not in found.dead_lettered
    assert [kind for kind in EVERY_FAULT if not result.faults.get(kind)] == []
    assert result.tenant_changes["reassigned"] and result.tenant_changes["hard_deleted"]
