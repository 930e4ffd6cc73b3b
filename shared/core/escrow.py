"""Escrow: the retry schedule of users whose provisioning failed for good, no I/O.

Entra's connector retries a failed user 6 h, 12 h and 24 h after the first failure, then every 24 h,
for 28 days. Here the same shape is measured in units of the first delay (6 h by default), so a test
can run the whole schedule in seconds: retries at 1, 2, 4, 8, 12, ... 112 units after the first failure.
Licence parking (LICENSE_LIMIT_EXCEEDED, retried by rescheduled messages) follows the same steps."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

DAILY_UNITS = 4  # 24 h in units of 6 h
LAST_UNIT = 28 * DAILY_UNITS  # 28 days
OFFSETS: tuple[int, ...] = (1, 2, 4, *range(2 * DAILY_UNITS, LAST_UNIT + 1, DAILY_UNITS))


@dataclass(frozen=True, slots=True)
class EscrowEntry:
    """One user waiting for its next scheduled retry. `reported_code` is the failure code the last
    accepted failure email was about: a retry failing the same way is not emailed again."""

    entra_id: str
    code: str
    description: str
    action: str
    first_failed_at: str
    last_failed_at: str
    next_retry_at: str = ""  # "" once the last retry of the schedule was sent
    failures: int = 1
    retries: int = 0  # retries enqueued so far
    reported_code: str = ""


def next_retry_at(first_failed_at: datetime, after: datetime, unit_seconds: float) -> datetime | None:
    """The first scheduled retry strictly after `after`; None when the schedule is over."""
    for offset in OFFSETS:
        moment = first_failed_at + timedelta(seconds=offset * unit_seconds)
        if moment > after:
            return moment
    return None


def expires_at(first_failed_at: datetime, unit_seconds: float) -> datetime:
    """When an entry is dropped: one step after its last retry, so that retry can still report."""
    return first_failed_at + timedelta(seconds=(LAST_UNIT + DAILY_UNITS) * unit_seconds)


def step_seconds(retry: int, unit_seconds: float) -> float:
    """The wait before retry number `retry` (0-based) counted from the one before: 1, 1, 2, 4, 4, ...
    units. Parked messages wait this long, so their retries land on the escrow schedule."""
    index = min(retry, len(OFFSETS) - 1)
    previous = OFFSETS[index - 1] if index > 0 else 0
    return (OFFSETS[index] - previous) * unit_seconds


def elapsed_seconds(retries: int, unit_seconds: float) -> float:
    """How long after the first failure retry number `retries` ran (0: the first failure itself)."""
    return sum(step_seconds(i, unit_seconds) for i in range(retries))
