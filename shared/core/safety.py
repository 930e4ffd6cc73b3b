"""Accidental-deletion prevention: the values and the threshold rule, no I/O.

A deactivation that would push the deactivations of the last window past the threshold is *held*
instead of applied (Entra's StagedDelete); an admin then releases it (applied on the user's next
reconcile, exempt from the threshold) or rejects it (the user stays active until it is seen in scope
again)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

HoldStatus = Literal["held", "released", "rejected"]
HOLD_STATUSES: frozenset[str] = frozenset(get_args(HoldStatus))


@dataclass(frozen=True, slots=True)
class HeldDeactivation:
    """A deactivation not applied because of the threshold, and what the admin decided about it."""

    entra_id: str
    salesforce_id: str
    reason: str
    held_at: str
    status: HoldStatus = "held"
    decided_at: str = ""


def deactivation_limit(absolute: int, percent: float, active_links: int) -> int | None:
    """How many deactivations the window allows: the lower of the absolute threshold and `percent` of
    the users the app keeps active; 0 switches either off; None when both are off. A percentage of a
    handful of users still allows one deactivation, so a small tenant is not held for every leaver."""
    limits = []
    if absolute > 0:
        limits.append(absolute)
    if percent > 0:
        limits.append(max(1, math.floor(active_links * percent / 100)))
    return min(limits) if limits else None
