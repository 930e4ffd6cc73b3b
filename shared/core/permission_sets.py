"""Salesforce permission sets and permission set groups from Entra group membership (the connector
cannot do this).

The mapping file's `[[permission_sets.group]]` entries say which Entra groups (object ids) grant which
permission sets (by Name) and permission set groups (by DeveloperName). A user in scope gets the
union of what its groups grant; membership is transitive (nested groups count).

Hands-off: the link of each user records the assignments this app made (target key → assignment id)
and the desired targets that an assignment it did not make already satisfies (id ""). Only the
former are ever removed; an admin's assignment is never touched and never duplicated.

    [[permission_sets.group]]
    group_id = "0f6c…"                        # the Entra group's object id
    name = "Sales EMEA"                       # optional, for people reading the file
    permission_sets = ["Sales_Ops", "Reports_Viewer"]
    permission_set_groups = ["Support_Agents"]
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Mapping

TargetKind = Literal["PermissionSet", "PermissionSetGroup"]
# groups/delta filters at most 50 ids per query, and checkMemberGroups takes 20 per call: 50 keeps
# detection to one delta query and the per-user read to three batch items.
MAX_MAPPED_GROUPS = 50
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# Permission set Name and permission set group DeveloperName are API names: a letter, then letters,
# digits and single underscores. (A managed package's sets carry their namespace in a separate
# NamespacePrefix field; mapping those is not supported.)
_API_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*")
_KEYS = {"group_id", "name", "permission_sets", "permission_set_groups"}


@dataclass(frozen=True, slots=True, order=True)
class PermissionTarget:
    """A permission set (by Name) or a permission set group (by DeveloperName)."""

    kind: TargetKind
    name: str

    @property
    def key(self) -> str:
        """How the target is recorded on a link and shown in plans and logs."""
        return f"{self.kind}:{self.name}"

    @classmethod
    def from_key(cls, key: str) -> "PermissionTarget":
        kind, _, name = key.partition(":")
        if kind not in ("PermissionSet", "PermissionSetGroup") or not name:
            raise ValueError(f"not a permission target key: {key!r}")
        return cls(kind, name)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class GroupGrant:
    group_id: str  # lower-case object id
    targets: frozenset[PermissionTarget]
    name: str = ""


@dataclass(frozen=True, slots=True)
class PermissionSetMapping:
    """Every group → targets entry of the mapping file; empty by default (the feature is off)."""

    grants: tuple[GroupGrant, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.grants)

    @property
    def group_ids(self) -> tuple[str, ...]:
        return tuple(sorted({g.group_id for g in self.grants}))

    @property
    def targets(self) -> frozenset[PermissionTarget]:
        return frozenset(t for g in self.grants for t in g.targets)

    def desired(self, member_of: Iterable[str]) -> frozenset[PermissionTarget]:
        """What a user who is a member of the groups `member_of` (object ids, any case) should hold."""
        groups = {g.lower() for g in member_of}
        return frozenset(t for g in self.grants if g.group_id in groups for t in g.targets)


def parse_permission_sets(table: Any, problems: list[str]) -> PermissionSetMapping:
    """The `[permission_sets]` section of a mapping file; every problem is appended to `problems`."""
    if not isinstance(table, dict):
        problems.append("permission_sets must be a table holding [[permission_sets.group]] entries")
        return PermissionSetMapping()
    problems += [f"permission_sets: unknown key {k!r} (expected group)" for k in table if k != "group"]
    entries = table.get("group", [])
    if not isinstance(entries, list):
        problems.append("permission_sets.group must be an array of tables: write [[permission_sets.group]]")
        return PermissionSetMapping()
    grants: dict[str, GroupGrant] = {}
    for n, entry in enumerate(entries, 1):
        where = f"permission_sets.group #{n}"
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be a table")
            continue
        problems += [f"{where}: unknown key {k!r} (expected {', '.join(sorted(_KEYS))})" for k in entry if k not in _KEYS]
        group_id = entry.get("group_id")
        if not isinstance(group_id, str) or not _GUID.fullmatch(group_id):
            problems.append(f"{where}: group_id must be an Entra group object id (a GUID), got {group_id!r}")
            continue
        label = entry.get("name", "")
        if not isinstance(label, str):
            problems.append(f"{where}: name must be a string")
        targets = _targets(entry, "permission_sets", "PermissionSet", where, problems)
        targets |= _targets(entry, "permission_set_groups", "PermissionSetGroup", where, problems)
        if not targets:
            problems.append(f"{where}: grants nothing; list permission_sets and/or permission_set_groups")
            continue
        key = group_id.lower()
        if key in grants:
            problems.append(f"{where}: group {key} is mapped twice; merge the entries")
            continue
        grants[key] = GroupGrant(key, frozenset(targets), label if isinstance(label, str) else "")
    if len(grants) > MAX_MAPPED_GROUPS:
        problems.append(f"permission_sets: {len(grants)} groups mapped; at most {MAX_MAPPED_GROUPS} are supported "
                        "(Graph's groups/delta filter limit); nest groups in fewer mapped ones")
    return PermissionSetMapping(tuple(grants[k] for k in sorted(grants)))


def _targets(entry: dict[str, Any], key: str, kind: TargetKind, where: str, problems: list[str]) -> set[PermissionTarget]:
    names = entry.get(key, [])
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        problems.append(f"{where}: {key} must be a list of API names")
        return set()
    bad = [name for name in names if not _API_NAME.fullmatch(name)]
    if bad:
        what = "permission set Name" if kind == "PermissionSet" else "permission set group DeveloperName"
        problems.append(f"{where}: {', '.join(repr(b) for b in bad)} is not a {what} (an API name such as "
                        "Sales_Ops, not the label)")
    return {PermissionTarget(kind, name) for name in names if _API_NAME.fullmatch(name)}


# ---- the recorded state and the plan ----------------------------------------------------------------
Recorded = Mapping[str, str]  # target key → assignment id this app made, or "" (satisfied by someone else's)


def as_pairs(recorded: Recorded) -> tuple[tuple[str, str], ...]:
    """The link's form: sorted (key, id) pairs."""
    return tuple(sorted(recorded.items()))


def needs_attention(desired: frozenset[PermissionTarget], recorded: Recorded) -> bool:
    """False when the link says every desired target is held and nothing else of ours is: then no
    Salesforce call is made for this user."""
    return {t.key for t in desired} != set(recorded)


@dataclass(frozen=True, slots=True)
class PermissionSetPlan:
    """What to do for one user. `add`: targets to assign; `remove`: (key, assignment id) of this app's
    assignments that no group grants any more; `keep`: the record after the plan, before the adds
    (key → our id, or "" when an assignment we did not make satisfies it); `manual`: desired targets
    held through someone else's assignment (left alone)."""

    add: tuple[PermissionTarget, ...] = ()
    remove: tuple[tuple[str, str], ...] = ()
    keep: Mapping[str, str] = field(default_factory=dict)
    manual: tuple[str, ...] = ()

    @property
    def changes(self) -> bool:
        return bool(self.add or self.remove)


def plan_permission_sets(desired: frozenset[PermissionTarget], recorded: Recorded, current: Recorded) -> PermissionSetPlan:
    """`current`: target key → id of the user's assignment in Salesforce now, for every target that is
    desired or recorded. An assignment is ours only if its id is the one we recorded when we made it."""
    wanted = {t.key for t in desired}
    ours = {k: i for k, i in recorded.items() if i and current.get(k) == i}
    add = tuple(sorted(t for t in desired if t.key not in current))
    remove = tuple(sorted((k, i) for k, i in ours.items() if k not in wanted))
    keep = {k: ours.get(k, "") for k in wanted if k in current}
    manual = tuple(sorted(k for k, i in keep.items() if not i))
    return PermissionSetPlan(add, remove, keep, manual)
