"""Membership changes of the groups that grant permission sets → "reconcile user X" messages.

Followed with groups/delta (members@delta), one delta query per 50 groups, each with its own cursor:
- the mapped groups: a user who joined or left is enqueued; a nested group that was added or removed
  has its users (at any depth) enqueued;
- the groups nested in them (listed every cycle with transitiveMembers/microsoft.graph.group), so a
  user joining or leaving a nested group is seen too. When the nesting changes, that set changes and
  its cursor (named after the set) starts over: a first round lists every member, which enqueues
  them all once (reconciling an unchanged user costs no Salesforce write).
A first round of a mapped group (the feature just switched on, or the mapping changed) enqueues its
members, so they get their permission sets. Only users the app provisions (in `scope`) are enqueued."""
from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Iterable

from ..core.errors import DeltaTokenExpired
from ..core.models import GroupDeltaPage
from ..core.ports import Directory, ReconcileQueue, StateStore
from .delta_follow import follow_delta

log = logging.getLogger(__name__)

CURSOR_PREFIX = "groups_delta:"
GROUPS_PER_DELTA_QUERY = 50  # Graph's limit for $filter=id eq … or …
READ_CONCURRENCY = 4


class MembershipWatcher:
    def __init__(self, directory: Directory, queue: ReconcileQueue, state: StateStore, group_ids: Iterable[str]) -> None:
        self._directory = directory
        self._queue = queue
        self._state = state
        self._groups = tuple(sorted({g.lower() for g in group_ids}))

    async def run(self, scope: set[str], sent: set[str]) -> tuple[int, int]:
        """Enqueue the users in scope (and not in `sent`, which grows) whose membership changed; returns
        (users enqueued, delta pages read)."""
        if not self._groups:
            return 0, 0
        gate = asyncio.Semaphore(READ_CONCURRENCY)

        async def nested_in(group_id: str) -> list[str]:
            async with gate:
                return await self._directory.group_subgroup_ids(group_id)

        nested = {g for found in await asyncio.gather(*(nested_in(g) for g in self._groups)) for g in found}
        nested -= set(self._groups)
        enqueued = pages = 0
        for chunk, expand_nested in ([(c, True) for c in _chunks(self._groups)]
                                     + [(c, False) for c in _chunks(sorted(nested))]):
            users, read = await self._follow(chunk, scope, sent, expand_nested)
            enqueued += users
            pages += read
        return enqueued, pages

    async def _follow(self, chunk: list[str], scope: set[str], sent: set[str], expand_nested: bool) -> tuple[int, int]:
        name = CURSOR_PREFIX + hashlib.sha256(",".join(chunk).encode()).hexdigest()[:16]
        try:
            return await self._rounds(name, self._state.get_cursor(name), chunk, scope, sent, expand_nested)
        except DeltaTokenExpired:
            log.warning("groups/delta link of %d groups expired; listing their members again", len(chunk))
            self._state.set_cursor(name, None)
            return await self._rounds(name, None, chunk, scope, sent, expand_nested)

    async def _rounds(self, name: str, link: str | None, chunk: list[str], scope: set[str], sent: set[str],
                      expand_nested: bool) -> tuple[int, int]:
        """Follow one cursor to its new deltaLink."""
        first_round = link is None

        async def fetch(page_link: str | None) -> GroupDeltaPage:
            return await self._directory.groups_delta_page(page_link, chunk)

        async def user_ids(page: GroupDeltaPage) -> set[str]:
            users = {c.member_id for c in page.changes if c.member_type == "user"}
            if expand_nested and not first_round:  # a first round's nested groups are followed themselves
                for change in (c for c in page.changes if c.member_type == "group"):
                    users.update(await self._directory.group_transitive_user_ids(change.member_id))
            return users

        return await follow_delta(name, link, fetch, user_ids, reason="membership", scope=scope, sent=sent,
                                  queue=self._queue, state=self._state)


def _chunks(ids: list[str] | tuple[str, ...]) -> list[list[str]]:
    return [list(ids[start:start + GROUPS_PER_DELTA_QUERY]) for start in range(0, len(ids), GROUPS_PER_DELTA_QUERY)]
