"""Assign and remove Salesforce permission sets and permission set groups as Entra group membership
says, for a batch of users whose Salesforce user exists (or, in a dry run, is about to).

Frugal: a user whose link already records exactly what its groups grant costs nothing. For the rest
of the batch: the target names resolved to ids (cached by the adapter), one query for their current
assignments, one create call and one delete call (200 records each). Hands-off: only assignments
whose ids the link recorded when this app made them are ever deleted; a granted target that someone
else's assignment already gives is recorded with id "" and left alone (never duplicated, never
removed). Salesforce keeps assignments on deactivated users, and so does this app: only users in
scope are passed here."""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

from ..core.errors import PermanentError, ProvisioningError
from ..core.models import PermissionSetAssignment, UserLink
from ..core.permission_sets import (
    PermissionSetPlan,
    PermissionTarget,
    as_pairs,
    needs_attention,
    plan_permission_sets,
)
from ..core.ports import SalesforceOrg, StateStore

log = logging.getLogger(__name__)

# A delete that finds the assignment gone (someone removed it meanwhile) has nothing left to do.
_ALREADY_GONE = frozenset({"ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY"})


@dataclass(frozen=True, slots=True)
class PermissionSetChange:
    """One user's permission set assignments changed (or, in a dry run, to change), by target key
    ("PermissionSet:Sales_Ops"). `manual`: granted targets held through an assignment this app did not
    make, left alone."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    manual: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)


@dataclass(frozen=True, slots=True)
class PermissionSetSubject:
    """A user in scope: what its groups grant, its Salesforce user (None in a dry run before the create)
    and its link (None likewise). A user `created` in this batch holds no assignments yet: not queried."""

    entra_id: str
    salesforce_id: str | None
    desired: frozenset[PermissionTarget]
    link: UserLink | None
    created: bool = False


Outcome = PermissionSetChange | ProvisioningError


class PermissionSetAssigner:
    """`targets`: every permission set and group the mapping names, resolved together so that one
    lookup (cached by the adapter) serves every later change."""

    def __init__(self, org: SalesforceOrg, state: StateStore, targets: frozenset[PermissionTarget]) -> None:
        self._org = org
        self._state = state
        self._targets = targets

    async def reconcile(self, subjects: Sequence[PermissionSetSubject], *, apply: bool = True) -> dict[str, Outcome]:
        """The change (or error) of each subject that needed one; users already in line are absent."""
        attention = [s for s in subjects if needs_attention(s.desired, _recorded(s.link))]
        if not attention:
            return {}
        # recorded targets the mapping no longer names are looked up too: ours are removed
        involved = self._targets | {PermissionTarget.from_key(k) for s in attention for k in _recorded(s.link)}
        try:
            ids = await self._org.permission_target_ids(involved)
        except ProvisioningError as exc:
            return {s.entra_id: exc for s in attention}
        outcomes: dict[str, Outcome] = {}
        for s in attention:
            missing = sorted(t.key for t in s.desired if t not in ids)
            if missing:
                outcomes[s.entra_id] = PermanentError(
                    "PermissionSetNotFound", f"the mapping grants {', '.join(missing)}, which Salesforce does not have "
                    "(permission sets by Name, permission set groups by DeveloperName)", system="permission_sets")
        live = [s for s in attention if s.entra_id not in outcomes]
        try:
            current = await self._current(live, ids)
        except ProvisioningError as exc:
            return {**outcomes, **{s.entra_id: exc for s in live}}
        plans = {s.entra_id: plan_permission_sets(s.desired, _recorded(s.link), current.get(_key(s.salesforce_id), {}))
                 for s in live}
        if not apply:
            return {**outcomes, **{s.entra_id: _change(plans[s.entra_id]) for s in live}}
        return {**outcomes, **await self._apply(live, plans, ids)}

    async def _current(self, subjects: list[PermissionSetSubject], ids: Mapping[PermissionTarget, str]
                       ) -> dict[str, dict[str, str]]:
        """Assignee (15-char id) → target key → assignment id, for the involved targets."""
        assignees = [s.salesforce_id for s in subjects if s.salesforce_id and not s.created]
        if not assignees:
            return {}
        by_id = {_key(i): t for t, i in ids.items()}
        rows = await self._org.permission_set_assignments(
            assignees, [i for t, i in ids.items() if t.kind == "PermissionSet"],
            [i for t, i in ids.items() if t.kind == "PermissionSetGroup"])
        current: dict[str, dict[str, str]] = {}
        for row in rows:
            target = _target_of(row, by_id)
            if target is not None:
                current.setdefault(_key(row.assignee_id), {})[target.key] = row.id
        return current

    async def _apply(self, subjects: list[PermissionSetSubject], plans: Mapping[str, PermissionSetPlan],
                     ids: Mapping[PermissionTarget, str]) -> dict[str, Outcome]:
        records = {s.entra_id: dict(plans[s.entra_id].keep) for s in subjects}
        added: dict[str, list[str]] = {s.entra_id: [] for s in subjects}
        removed: dict[str, list[str]] = {s.entra_id: [] for s in subjects}
        manual: dict[str, list[str]] = {s.entra_id: list(plans[s.entra_id].manual) for s in subjects}
        errors: dict[str, ProvisioningError] = {}

        creates = [(s, t) for s in subjects for t in plans[s.entra_id].add]
        if creates:
            results = await self._org.create_permission_set_assignments([
                {"AssigneeId": s.salesforce_id, f"{t.kind}Id": ids[t]} for s, t in creates])
            for (s, t), result in zip(creates, results, strict=True):
                if result.error is None:
                    records[s.entra_id][t.key] = result.salesforce_id or ""
                    added[s.entra_id].append(t.key)
                elif result.error.code == "DUPLICATE_VALUE":  # assigned by someone else since the query
                    records[s.entra_id][t.key] = ""
                    manual[s.entra_id].append(t.key)
                else:
                    errors.setdefault(s.entra_id, result.error)
        deletes = [(s, key, assignment_id) for s in subjects for key, assignment_id in plans[s.entra_id].remove]
        if deletes:
            results = await self._org.delete_permission_set_assignments([i for _, _, i in deletes])
            for (s, key, assignment_id), result in zip(deletes, results, strict=True):
                if result.error is None or result.error.code in _ALREADY_GONE:
                    removed[s.entra_id].append(key)
                else:  # still ours: recorded, so the next reconcile tries again
                    records[s.entra_id][key] = assignment_id
                    errors.setdefault(s.entra_id, result.error)

        outcomes: dict[str, Outcome] = {}
        for s in subjects:
            pairs = as_pairs(records[s.entra_id])
            if s.link is not None and pairs != s.link.permission_sets:
                self._state.put_link(replace(s.link, permission_sets=pairs))
            change = PermissionSetChange(tuple(added[s.entra_id]), tuple(removed[s.entra_id]),
                                         tuple(sorted(manual[s.entra_id])))
            outcomes[s.entra_id] = errors.get(s.entra_id, change)
            if change.changed:
                log.info("entra=%s sf=%s permission sets +%s -%s", s.entra_id, s.salesforce_id,
                         ",".join(change.added) or "none", ",".join(change.removed) or "none")
        return outcomes


def _recorded(link: UserLink | None) -> dict[str, str]:
    return dict(link.permission_sets) if link is not None else {}


def _key(salesforce_id: str | None) -> str:
    return (salesforce_id or "")[:15]  # Salesforce ids compare by their 15-character form


def _target_of(row: PermissionSetAssignment, by_id: Mapping[str, PermissionTarget]) -> PermissionTarget | None:
    if row.permission_set_group_id:  # its permission_set_id is the group's aggregate set
        return by_id.get(_key(row.permission_set_group_id))
    return by_id.get(_key(row.permission_set_id))


def _change(plan: PermissionSetPlan) -> PermissionSetChange:
    return PermissionSetChange(tuple(t.key for t in plan.add), tuple(k for k, _ in plan.remove), plan.manual)
