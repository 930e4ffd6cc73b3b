"""Accidental-deletion prevention across workers: deactivations beyond a threshold are held, reported
once by email, and applied only after an admin releases them.

Provisioning runs per message, not per cycle, so the threshold counts deactivations in a rolling
window (default the last hour) kept in the state store and shared by every worker. A deactivation
that does not fit is recorded as held and its message completes normally (the user stays active).

While deactivations await a decision, every new one is held too, whatever the window says: the window
rolling over must not let the next batch of an accident through while the admin has not answered
(Entra quarantines the whole job in that case).

Releasing is level-triggered like everything else: `release` marks the holds released and enqueues
the users; their next reconcile re-decides, and a deactivation of a *released* user is applied without
asking the threshold (the admin allowed it) and without using up the window. The released mark is
per user, so other deactivations arriving in between cannot consume the admin's allowance; it is
dropped once the deactivation succeeded. A rejected hold keeps the user active: its deactivations are
skipped until the user is seen in scope again, which drops the mark, so a later genuine leaver is
treated normally. An empty assignment list after a Graph outage looks like everyone leaving, and is
held the same way."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Callable, Mapping, Sequence

from ..core.errors import ProvisioningError, TransientError
from ..core.messages import ReconcileMessage
from ..core.planning import Operation
from ..core.ports import ReconcileQueue, StateStore
from ..core.safety import HeldDeactivation, HoldStatus, deactivation_limit
from .admin_mail import AdminMail

log = logging.getLogger(__name__)

NOTICE_CURSOR = "safety/held-notified-at"  # set while the current holds have been reported
NOTICE_LEASE = "safety/held-notice"
MAX_LISTED = 1000


@dataclass(frozen=True, slots=True)
class SafetyConfig:
    threshold: int = 500  # deactivations per window; 0: off
    threshold_percent: float = 20.0  # of the users the app keeps active; 0: off
    window_seconds: float = 3600.0
    active_links_ttl_seconds: float = 300.0  # how long a count of active links is reused


@dataclass(frozen=True, slots=True)
class Screening:
    """replacements: Entra id → what to do instead of its deactivation (a skip saying why, or an error);
    released: users whose released deactivation goes ahead in this batch."""

    replacements: Mapping[str, Operation | ProvisioningError]
    released: frozenset[str]


class UnknownHold(ValueError):
    pass


class DeletionGuard:
    def __init__(
        self,
        state: StateStore,
        mail: AdminMail,
        queue: ReconcileQueue,
        config: SafetyConfig = SafetyConfig(),
        *,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        self._state = state
        self._mail = mail
        self._queue = queue
        self._config = config
        self._now = now
        self._active_links: tuple[int, float] | None = None  # (count, monotonic time read)

    # ---- provisioning hook --------------------------------------------------------------------

    async def screen(self, operations: Sequence[Operation]) -> Screening:
        """Decide which of a batch's deactivations may be applied now. Operations other than
        deactivations are only looked at to drop holds that no longer apply."""
        holds = {h.entra_id: h for h in self._state.held_deactivations()}
        if not holds and not any(op.action == "deactivate" for op in operations):
            return Screening({}, frozenset())
        stale = [op.entra_id for op in operations if op.entra_id in holds and op.action != "deactivate"]
        replacements: dict[str, Operation | ProvisioningError] = {}
        released: set[str] = set()
        candidates: list[Operation] = []
        for op in (op for op in operations if op.action == "deactivate"):
            hold = holds.get(op.entra_id)
            if hold is None:
                candidates.append(op)
            elif hold.status == "released":
                released.add(op.entra_id)
            elif hold.status == "rejected":
                replacements[op.entra_id] = _skip(op, "deactivation rejected by an admin; kept active")
            else:
                replacements[op.entra_id] = _skip(op, "deactivation held: waiting for an admin to release or reject it")
        undecided = any(h.status == "held" and h.entra_id not in stale for h in holds.values())
        new_holds = self._hold(candidates) if undecided else self._hold_beyond_limit(candidates)
        for hold in new_holds:
            holds[hold.entra_id] = hold
            op = next(op for op in candidates if op.entra_id == hold.entra_id)
            why = "earlier held deactivations await a decision" if undecided else "deactivation threshold reached"
            replacements[op.entra_id] = _skip(op, f"deactivation held: {why}")
        if stale:
            self._state.delete_held_deactivations(stale)
            log.info("dropped %d holds of users no longer planned for deactivation", len(stale))
            for entra_id in stale:
                holds.pop(entra_id)
        holding = [h for h in holds.values() if h.status == "held"]
        if not holding:
            self._forget_notice()
        elif any(isinstance(r, Operation) and r.entra_id in holds and holds[r.entra_id].status == "held"
                 for r in replacements.values()):
            error = await self._notify(holding)
            if error is not None:  # the holds stay recorded; their messages retry, and so does the email
                for entra_id, r in list(replacements.items()):
                    if holds[entra_id].status == "held":
                        replacements[entra_id] = error
        return Screening(replacements, frozenset(released))

    def forget_released(self, entra_ids: Sequence[str]) -> None:
        """The released deactivations of these users were applied: their allowance is used up."""
        if entra_ids:
            self._state.delete_held_deactivations(entra_ids)

    def _hold_beyond_limit(self, candidates: list[Operation]) -> list[HeldDeactivation]:
        if not candidates:
            return []
        links = self._active_link_count()
        limit = deactivation_limit(self._config.threshold, self._config.threshold_percent, links)
        if limit is None:
            return []
        granted = self._state.reserve_deactivations(len(candidates), limit, self._config.window_seconds)
        if granted < len(candidates) and self._config.threshold_percent > 0:
            # Never hold on a cached count: during a first sync the app keeps more users active by
            # the minute, and a count from minutes ago would hold ordinary leavers.
            fresh = self._active_link_count(fresh=True)
            if fresh > links:
                limit = deactivation_limit(self._config.threshold, self._config.threshold_percent, fresh) or limit
                granted += self._state.reserve_deactivations(len(candidates) - granted, limit,
                                                             self._config.window_seconds)
        if granted == len(candidates):
            return []
        log.warning("deactivation threshold reached (%d per %.0f s): applying %d, holding %d",
                    limit, self._config.window_seconds, granted, len(candidates) - granted)
        return self._hold(candidates[granted:])

    def _hold(self, operations: list[Operation]) -> list[HeldDeactivation]:
        if not operations:
            return []
        at = self._now().isoformat()
        held = [HeldDeactivation(op.entra_id, op.salesforce_id or "", op.reason, at) for op in operations]
        self._state.put_held_deactivations(held)
        return held

    def limit(self) -> int | None:
        """How many deactivations one window allows now; None without a threshold. Reads only."""
        return deactivation_limit(self._config.threshold, self._config.threshold_percent, self._active_link_count())

    def _active_link_count(self, *, fresh: bool = False) -> int:
        if self._config.threshold_percent <= 0:
            return 0
        cached = self._active_links
        if fresh or cached is None or time.monotonic() - cached[1] > self._config.active_links_ttl_seconds:
            cached = self._active_links = (self._state.count_active_links(), time.monotonic())
        return cached[0]

    # ---- the one email while holding ----------------------------------------------------------

    async def _notify(self, holding: list[HeldDeactivation]) -> TransientError | None:
        """Report the holds unless they were reported already; one worker at a time (lease)."""
        if self._state.get_cursor(NOTICE_CURSOR) is not None:
            return None
        if await self._mail.exclusively(NOTICE_LEASE, lambda: self._send_notice(holding)) is False:
            # keep holding; the messages retry, and so does the email
            return TransientError("HoldNotReported", "the email reporting held deactivations was not accepted",
                                  system="mail")
        return None  # sent, or another worker is sending it now

    async def _send_notice(self, holding: list[HeldDeactivation]) -> bool:
        if self._state.get_cursor(NOTICE_CURSOR) is not None:
            return True
        subject, body = compose_hold_notice(holding, self._config)
        if not await self._mail.send(subject, body, what=f"held-deactivations ({len(holding)} holds)"):
            return False
        self._state.set_cursor(NOTICE_CURSOR, self._now().isoformat())
        return True

    def _forget_notice(self) -> None:
        """No hold is waiting any more: the next hold is news and gets its own email."""
        if self._state.get_cursor(NOTICE_CURSOR) is not None:
            self._state.set_cursor(NOTICE_CURSOR, None)

    # ---- admin commands -----------------------------------------------------------------------

    def held(self) -> list[HeldDeactivation]:
        return self._state.held_deactivations()

    async def release(self, entra_ids: Sequence[str] | None) -> list[HeldDeactivation]:
        """Allow these users' deactivations (None: every held one) and enqueue the users
        so the deactivations are applied now."""
        decided = self._decide(entra_ids, "released")
        if decided:
            cause = f"release-held:{decided[0].decided_at}"
            await self._queue.send([ReconcileMessage.new(h.entra_id, "on-demand", cause) for h in decided])
        return decided

    def reject(self, entra_ids: Sequence[str] | None) -> list[HeldDeactivation]:
        """Keep these users active (None: every held one); their mark goes once they are in scope again."""
        return self._decide(entra_ids, "rejected")

    def _decide(self, entra_ids: Sequence[str] | None, status: HoldStatus) -> list[HeldDeactivation]:
        holds = {h.entra_id: h for h in self._state.held_deactivations()}
        if entra_ids is None:
            chosen = [h for h in holds.values() if h.status == "held"]
        else:
            wanted = list(dict.fromkeys(i.strip().lower() for i in entra_ids))
            unknown = [i for i in wanted if i not in holds]
            if unknown:
                raise UnknownHold(f"no held deactivation for: {', '.join(unknown)}")
            chosen = [holds[i] for i in wanted]
        at = self._now().isoformat()
        decided = [replace(h, status=status, decided_at=at) for h in chosen]
        self._state.put_held_deactivations(decided)
        holds.update({h.entra_id: h for h in decided})
        if not any(h.status == "held" for h in holds.values()):
            self._forget_notice()
        log.info("%s %d held deactivations", status, len(decided))
        return decided


def _skip(op: Operation, reason: str) -> Operation:
    """The deactivation as a skip: nothing written, the Salesforce id kept for the log."""
    return Operation("skip", op.entra_id, op.salesforce_id, reason=reason)


def compose_hold_notice(holding: Sequence[HeldDeactivation], config: SafetyConfig) -> tuple[str, str]:
    count = len(holding)
    subject = f"Salesforce provisioning: {count} deactivation{'s' if count != 1 else ''} held for your decision"
    limits = []
    if config.threshold > 0:
        limits.append(f"{config.threshold} deactivations")
    if config.threshold_percent > 0:
        limits.append(f"{config.threshold_percent:g}% of the active users")
    lines = [
        f"More Salesforce users were about to be deactivated than the threshold allows "
        f"({' or '.join(limits)} within {config.window_seconds / 60:g} minutes).",
        f"{count} deactivation(s) are held: those users stay active in Salesforce until you decide.",
        "This can be an accidental unassignment, a scoping change, or an empty answer from Microsoft Graph.",
        "",
        "List them:                python -m cli held",
        "Apply them:               python -m cli release-held --all   (or --entra-id ID ...)",
        "Keep the users active:    python -m cli reject-held --all    (or --entra-id ID ...)",
        "",
        "You get this email once while deactivations are held; further holds are added to the list.",
        "",
    ]
    for hold in list(holding)[:MAX_LISTED]:
        lines.append(f"- user {hold.entra_id} (Salesforce {hold.salesforce_id}): {hold.reason}, held at {hold.held_at}")
    if count > MAX_LISTED:
        lines.append(f"... and {count - MAX_LISTED} more; run `python -m cli held` for all of them.")
    return subject, "\n".join(lines)
