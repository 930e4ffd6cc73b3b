"""Escrow: users whose provisioning failed for good are retried on later cycles, like the connector's
escrows (6 h, 12 h and 24 h after the first failure, then every 24 h for 28 days; the schedule is in
shared/core/escrow.py). A user fixed in Salesforce (a username freed, a licence bought) thus converges
without an admin re-assigning it.

- A permanent failure (or retries/licence parking run out) is dead-lettered as before and recorded here
  by the provisioner; a user that fails again keeps its first failure time, so the schedule goes on.
- The detect timer calls `enqueue_due`: a retry message for each entry whose time has come (its id is
  derived from the entry, so a re-run cycle's duplicate is dropped by Service Bus).
- A reconcile that succeeds removes the user's entry (`observe`); an entry past 28 days is dropped.
- The failure digest asks `is_news`: a failure is emailed once, and again only when its code changes."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Sequence

from ..core.escrow import EscrowEntry, expires_at, next_retry_at
from ..core.messages import ReconcileMessage
from ..core.models import FailureRecord
from ..core.ports import ReconcileQueue, StateStore
from .quarantine import ReconcileOutcome

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EscrowConfig:
    unit_seconds: float = 21600.0  # the first retry's delay; the schedule is measured in it
    ids_ttl_seconds: float = 30.0  # how long this worker reuses the list of users in escrow


class Escrow:
    def __init__(
        self,
        state: StateStore,
        queue: ReconcileQueue,
        config: EscrowConfig = EscrowConfig(),
        *,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        self._state = state
        self._queue = queue
        self.config = config
        self._now = now
        self._ids: set[str] = set()
        self._ids_read_at = float("-inf")

    def entries(self) -> list[EscrowEntry]:
        return sorted(self._state.escrows(), key=lambda e: (e.next_retry_at or "~", e.entra_id))

    def record(self, failure: FailureRecord, *, since_first_failure: float = 0.0) -> EscrowEntry | None:
        """The user's message failed for good: start its escrow, or count another failure of it.
        since_first_failure: how long the user has been failing already (a parked licence failure)."""
        if not failure.entra_id:
            return None  # a message too broken to name a user: nothing to retry
        now = self._now()
        current = self._state.get_escrow(failure.entra_id)
        if current is None:
            first = now - timedelta(seconds=since_first_failure)
            upcoming = next_retry_at(first, now, self.config.unit_seconds)
            entry = EscrowEntry(failure.entra_id.lower(), failure.code, failure.description, failure.action,
                                first_failed_at=first.isoformat(), last_failed_at=now.isoformat(),
                                next_retry_at=upcoming.isoformat() if upcoming else "")
        else:
            entry = replace(current, code=failure.code, description=failure.description, action=failure.action,
                            last_failed_at=now.isoformat(), failures=current.failures + 1)
        self._state.put_escrow(entry)
        self._ids.add(entry.entra_id)
        log.info("entra=%s in escrow after %s (failure %d); next retry %s", entry.entra_id, entry.code,
                 entry.failures, entry.next_retry_at or "none: the schedule is over")
        return entry

    def observe(self, results: Iterable[ReconcileOutcome]) -> None:
        """Users reconciled without error leave the escrow. Never raises: a stale entry only costs one
        more (no-op) retry later, which removes it."""
        try:
            escrowed = self._escrowed_ids()
            done = sorted({r.entra_id for r in results if r.error is None and r.entra_id in escrowed})
            if done:
                self._state.delete_escrows(done)
                self._ids.difference_update(done)
                log.info("%d users left the escrow: provisioned", len(done))
        except Exception as exc:
            log.error("escrow bookkeeping failed: %s", getattr(exc, "code", type(exc).__name__))

    def _escrowed_ids(self) -> set[str]:
        if time.monotonic() - self._ids_read_at > self.config.ids_ttl_seconds:
            self._ids = {e.entra_id for e in self._state.escrows()}
            self._ids_read_at = time.monotonic()
        return self._ids

    async def enqueue_due(self) -> int:
        """Send a retry for every entry whose time has come; drop entries whose schedule is over.
        Returns how many retries were sent."""
        now = self._now()
        unit = self.config.unit_seconds
        due: list[EscrowEntry] = []
        over: list[EscrowEntry] = []
        for entry in self._state.escrows():
            first = datetime.fromisoformat(entry.first_failed_at)
            if now >= expires_at(first, unit):
                over.append(entry)
            elif entry.next_retry_at and now >= datetime.fromisoformat(entry.next_retry_at):
                due.append(entry)
        if due:
            # Sent before the entries advance: a crash in between re-sends the same ids (dropped as duplicates).
            await self._queue.send([ReconcileMessage.new(e.entra_id, "escrow", f"{e.first_failed_at}|{e.retries + 1}")
                                    for e in due])
            for entry in due:
                upcoming = next_retry_at(datetime.fromisoformat(entry.first_failed_at), now, unit)
                self._state.put_escrow(replace(entry, retries=entry.retries + 1,
                                               next_retry_at=upcoming.isoformat() if upcoming else ""))
            log.info("escrow: %d users due for a retry enqueued", len(due))
        if over:
            self._state.delete_escrows([e.entra_id for e in over])
            self._ids.difference_update(e.entra_id for e in over)
            for entry in over:
                log.warning("entra=%s leaves the escrow after %d failures (last %s): no more automatic retries",
                            entry.entra_id, entry.failures, entry.code)
        return len(due)

    # ---- the failure digest's side ------------------------------------------------------------

    def is_news(self, failure: FailureRecord) -> bool:
        """False when this user's failure with this code was emailed already."""
        entry = self._state.get_escrow(failure.entra_id) if failure.entra_id else None
        return entry is None or entry.reported_code != failure.code

    def reported(self, failures: Sequence[FailureRecord]) -> None:
        """These failures were emailed: their retries failing the same way are not emailed again."""
        for failure in failures:
            entry = self._state.get_escrow(failure.entra_id) if failure.entra_id else None
            if entry is not None and entry.reported_code != failure.code:
                self._state.put_escrow(replace(entry, reported_code=failure.code))
