"""Detect which users need reconciling and enqueue one message per user.

Three sources: the Salesforce app's role assignments (users, and direct members of assigned groups),
diffed against the stored snapshot so assignment and unassignment are changes; Graph users/delta
for attribute changes and deletions; and, when the mapping grants permission sets, the membership of
those groups (membership_changes.py). Messages are sent *before* the cursor and snapshot are stored, so
a crash in between re-sends (dropped by duplicate detection, or harmless) and never loses a change.
Long initial syncs checkpoint page by page.

An assignment list that comes back empty while the snapshot has users is what a lagging replica
answers just after a Graph outage, as well as what unassigning everyone looks like. The users' own
assignment reads tell the two apart: if a sample of them still holds the app's roles, the list is not
the truth and the cycle fails without enqueuing anything or storing anything."""
from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Collection
from datetime import datetime, timezone

from ..core.errors import DeltaTokenExpired, ProvisioningError, TransientError
from ..core.messages import ReconcileMessage, Reason
from ..core.models import DeltaPage
from ..core.ports import Directory, ReconcileQueue, StateStore
from .audit import CycleRecord
from .delta_follow import follow_delta
from .membership_changes import MembershipWatcher

log = logging.getLogger(__name__)

DELTA_CURSOR = "users_delta"
GROUP_READ_CONCURRENCY = 4
WITNESSES = 10  # users asked for their own assignments when the app's list comes back empty (one $batch)


@dataclass(frozen=True, slots=True)
class DetectConfig:
    service_principal_id: str
    select: tuple[str, ...]
    permission_set_groups: tuple[str, ...] = ()  # groups whose membership changes are followed too


@dataclass(frozen=True, slots=True)
class CycleReport:
    assignment_changes: int
    delta_changes: int
    messages_sent: int
    delta_pages: int
    full_sync: bool
    membership_changes: int = 0

    @property
    def users_changed(self) -> int:
        return self.assignment_changes + self.delta_changes + self.membership_changes


def _digest(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:20]


class ChangeDetector:
    def __init__(self, directory: Directory, queue: ReconcileQueue, state: StateStore, config: DetectConfig) -> None:
        self._directory = directory
        self._queue = queue
        self._state = state
        self.config = config
        self._memberships = MembershipWatcher(directory, queue, state, config.permission_set_groups)

    async def run_cycle(self) -> CycleReport:
        started = time.monotonic()
        current = await self.assigned_users()
        previous = self._state.assignment_snapshot()
        changed = sorted(u for u in current.keys() | previous.keys() if current.get(u, frozenset()) != previous.get(u, frozenset()))
        if previous and not current:
            await self._confirm_everyone_left(previous.keys())
        link = self._state.get_cursor(DELTA_CURSOR)
        # Ids repeat only when a crashed cycle is re-run from the same cursor in the same minute (so
        # duplicate detection drops the re-sends); an assignment that comes back later is a new message.
        cycle_key = _digest(link or "initial", datetime.now(timezone.utc).strftime("%Y%m%dT%H%M"))
        await self._queue.send([
            ReconcileMessage.new(u, "assignment", _digest(sorted(previous.get(u, ())), sorted(current.get(u, ())), cycle_key))
            for u in changed
        ])
        sent = set(changed)
        scope = current.keys() | previous.keys()

        full_sync = link is None
        try:
            delta_changes, pages = await self._follow_delta(link, scope, sent, "delta")
        except DeltaTokenExpired:
            log.warning("stored delta link expired; running a full resync")
            self._state.set_cursor(DELTA_CURSOR, None)
            full_sync = True
            delta_changes, pages = await self._follow_delta(None, scope, sent, "resync")
        membership_changes, group_pages = await self._memberships.run(scope, sent)

        self._state.apply_assignment_changes(
            {u: current[u] for u in changed if u in current}, [u for u in changed if u not in current]
        )
        report = CycleReport(len(changed), delta_changes, len(sent), pages, full_sync, membership_changes)
        CycleRecord(report.users_changed, report.messages_sent, full_sync, round((time.monotonic() - started) * 1000, 1),
                    {"assignment_changes": len(changed), "delta_changes": delta_changes, "delta_pages": pages,
                     "membership_changes": membership_changes, "group_delta_pages": group_pages}).emit()
        if not sent:
            log.info("nothing to do: no assignment or attribute changes")
        return report

    async def _confirm_everyone_left(self, previous: Collection[str]) -> None:
        """Raise unless a sample of the previously assigned users' own reads agree that none of them
        holds a role of the app any more (a read that fails fails the cycle too: nothing is known)."""
        sample = random.sample(sorted(previous), min(WITNESSES, len(previous)))
        states = await self._directory.user_states(sample, ("id",), self.config.service_principal_id)
        for state in states.values():
            if isinstance(state, ProvisioningError):
                raise state
            if state.user is not None and state.app_role_ids:
                raise TransientError(
                    "AssignmentListIncomplete",
                    "the app's assignment list came back empty, but its users still hold its roles: not trusted",
                    system="graph")
        log.warning("the Salesforce app has no assignments at all (confirmed by %d users' own reads): "
                    "every provisioned user would be deactivated", len(sample))

    async def assigned_users(self) -> dict[str, frozenset[str]]:
        """User id → app role ids, granted directly or through a group the user is a direct member of."""
        roles: dict[str, set[str]] = defaultdict(set)
        group_roles: dict[str, set[str]] = defaultdict(set)
        for a in await self._directory.app_role_assignments(self.config.service_principal_id):
            if a.principal_type == "User":
                roles[a.principal_id].add(a.app_role_id)
            elif a.principal_type == "Group":
                group_roles[a.principal_id].add(a.app_role_id)
        gate = asyncio.Semaphore(GROUP_READ_CONCURRENCY)

        async def members(group_id: str) -> list[str]:
            async with gate:
                return await self._directory.group_member_ids(group_id)

        groups = list(group_roles)
        for group_id, member_ids in zip(groups, await asyncio.gather(*(members(g) for g in groups))):
            for member in member_ids:
                roles[member] |= group_roles[group_id]
        return {u: frozenset(r) for u, r in roles.items()}

    async def _follow_delta(self, link: str | None, scope: set[str], sent: set[str], reason: Reason) -> tuple[int, int]:
        """Follow users/delta from link (None: initial sync) to a new deltaLink, enqueuing users in scope."""
        async def fetch(page_link: str | None) -> DeltaPage:
            return await self._directory.users_delta_page(page_link, self.config.select)

        async def user_ids(page: DeltaPage) -> set[str]:
            return {c.user_id for c in page.changes}

        return await follow_delta(DELTA_CURSOR, link, fetch, user_ids, reason=reason, scope=scope, sent=sent,
                                  queue=self._queue, state=self._state)
