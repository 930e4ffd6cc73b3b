"""Quarantine: the values and rules, no I/O.

Like the Entra connector's quarantine, the app stops calling Salesforce when Salesforce is the problem:
when it rejects the app's credentials (at once, like EncounteredQuarantineException) or when too large
a share of recent Salesforce operations failed (like EncounteredEscrowProportionThreshold). Failures
that are about one user's data (a taken username, a missing field, no licence left) say nothing about
Salesforce's health, so they are not counted at all, as the connector leaves reference failures out."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterable, Literal, get_args

from .errors import ProvisioningError, SessionExpired

QuarantineReason = Literal["auth", "failure_ratio"]
QUARANTINE_REASONS: frozenset[str] = frozenset(get_args(QuarantineReason))

# Salesforce errors that concern one user's record, not Salesforce: not counted.
USER_DATA_CODES = frozenset({
    "DUPLICATE_USERNAME", "DUPLICATE_COMM_NICKNAME", "DUPLICATE_VALUE", "DUPLICATE_EXTERNAL_ID",
    "REQUIRED_FIELD_MISSING", "STRING_TOO_LONG", "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
    "FIELD_INTEGRITY_EXCEPTION", "FIELD_CUSTOM_VALIDATION_EXCEPTION", "INVALID_EMAIL_ADDRESS",
    "INVALID_CROSS_REFERENCE_KEY", "LICENSE_LIMIT_EXCEEDED", "MALFORMED_ID",
})
# Salesforce refusing the app itself: an immediate quarantine.
AUTH_CODES = frozenset({"INVALID_AUTH", "INVALID_SESSION_ID", "HTTP_401", "INVALID_GRANT", "INVALID_CLIENT"})

Outcome = Literal["success", "failure", "auth", "ignored"]


@dataclass(frozen=True, slots=True)
class QuarantineStatus:
    """The app's quarantine, shared by every worker through the state store.

    active: False once lifted but the lift is not yet reported (the record goes when it is).
    notified_reason: the reason the last accepted alert was about ("" none), so one email goes out
    when quarantine starts and another only when the reason changes."""

    reason: QuarantineReason
    detail: str
    error_code: str
    since: str
    probe_at: str  # no worker tries Salesforce before this (UTC ISO 8601)
    probes: int = 0  # failed probes so far: the next one waits longer
    active: bool = True
    notified_reason: str = ""
    lifted_at: str = ""
    lifted_by: str = ""


@dataclass(frozen=True, slots=True)
class OutcomeCounts:
    """What one batch of reconciles says about Salesforce's health."""

    succeeded: int = 0
    failed: int = 0
    auth_code: str | None = None  # set when Salesforce rejected the credentials
    top_code: str | None = None  # the most frequent counted failure code

    @property
    def counted(self) -> int:
        return self.succeeded + self.failed


def classify(action: str | None, error: ProvisioningError | None) -> Outcome:
    """One user's reconcile as evidence about Salesforce. `action` is the planned action (None when
    planning did not happen). A skip (nothing asked of Salesforce) and a user-data failure are ignored."""
    if error is None:
        return "success" if action not in (None, "skip") else "ignored"
    if error.system != "salesforce":
        return "ignored"  # Graph, the state store, a lease, the mapping: not Salesforce's health
    if isinstance(error, SessionExpired) or error.code in AUTH_CODES:
        return "auth"
    if error.code in USER_DATA_CODES or (error.fields and not error.transient):
        return "ignored"
    return "failure"


def count_outcomes(outcomes: Iterable[tuple[str | None, ProvisioningError | None]]) -> OutcomeCounts:
    """Successes count per user; a failure counts once per error: one failed Salesforce call (a query or
    a collection write) hands the same error to every user of its batch, and is one failure, not 200,
    so a few failed calls among many good ones do not look like an outage."""
    succeeded = failed = 0
    auth_code: str | None = None
    codes: dict[str, int] = {}
    seen: set[int] = set()
    for action, error in outcomes:
        kind = classify(action, error)
        if kind == "success":
            succeeded += 1
        elif kind in ("failure", "auth") and id(error) not in seen:
            seen.add(id(error))
            failed += 1
            assert error is not None
            codes[error.code] = codes.get(error.code, 0) + 1
            if kind == "auth":
                auth_code = error.code
    top = max(codes, key=lambda c: codes[c]) if codes else None
    return OutcomeCounts(succeeded, failed, auth_code, top)


def breached(succeeded: int, failed: int, ratio: float, min_operations: int) -> bool:
    """More than `ratio` of at least `min_operations` counted operations failed (ratio 0: off)."""
    total = succeeded + failed
    return ratio > 0 and total >= max(1, min_operations) and failed / total > ratio


def backoff_seconds(step: int, base: float, maximum: float, *, jitter: bool = True) -> float:
    """base · 2^step, at most `maximum`, with ±20% jitter so deferred messages do not return at once."""
    delay = min(maximum, base * 2 ** min(step, 30))
    return delay * random.uniform(0.8, 1.2) if jitter else delay
