"""groups/delta over the tenant's membership log, as far as membership tracking goes.

    GET /groups/delta?$filter=id eq '{id}' or id eq '{id}'&$select=members   (≤50 ids; no filter: all)

The first round lists each group with its direct members in `members@delta`; later rounds list the
groups whose membership changed since, with the net change per member (a removed one carries
`@removed: {"reason": "deleted"}`). Only ids come back for members, with their @odata.type. A group's
members are split across pages of `page_size` entries, so the same group object repeats on later
pages, as Graph does for large groups. Tokens are base64url JSON and carry the whole position, so the
server keeps no per-client state."""
from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, replace
from typing import Any, Mapping

from .tenant import Tenant

MAX_FILTER_IDS = 50
SELECTABLE = frozenset({"id", "displayName", "description", "members"})
_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_ID_CLAUSE = re.compile(rf"^\s*id\s+eq\s+'({_GUID})'\s*$")


class GroupDeltaError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True, slots=True)
class _Cursor:
    groups: tuple[str, ...] | None  # None: every group
    select: tuple[str, ...]
    after: int  # membership log position the round starts after
    upto: int  # ... and ends at
    initial: bool
    offset: int = 0  # entries served in this round
    final: bool = False


def respond(tenant: Tenant, query: Mapping[str, str], page_size: int, link_base: str) -> dict[str, Any]:
    """The JSON body for one groups/delta request; raises GroupDeltaError."""
    skiptoken, deltatoken = query.get("$skiptoken"), query.get("$deltatoken")
    if skiptoken or deltatoken:
        if "$filter" in query or "$select" in query:
            raise GroupDeltaError(400, "Request_BadRequest", "$filter and $select cannot be combined with a token.")
        cursor = _decode(skiptoken or deltatoken or "", final=deltatoken is not None)
        if deltatoken:  # a new round from where the last one ended
            cursor = _Cursor(cursor.groups, cursor.select, cursor.upto, tenant.membership_position, initial=False)
    else:
        cursor = _Cursor(_filter(query.get("$filter")), _select(query.get("$select")), 0, tenant.membership_position,
                         initial=True)
    entries = _entries(tenant, cursor)
    page = entries[cursor.offset:cursor.offset + page_size]
    done = cursor.offset + page_size >= len(entries)
    body: dict[str, Any] = {"@odata.context": f"{link_base}/$metadata#groups", "value": _objects(tenant, page, cursor)}
    if done:
        body["@odata.deltaLink"] = f"{link_base}/groups/delta?$deltatoken=" + _encode(replace(cursor, final=True, offset=0))
    else:
        body["@odata.nextLink"] = f"{link_base}/groups/delta?$skiptoken=" + _encode(
            replace(cursor, offset=cursor.offset + page_size))
    return body


def _entries(tenant: Tenant, cursor: _Cursor) -> list[tuple[str, dict[str, Any] | None]]:
    """(group id, member entry) in a stable order; (group id, None) for a listed group without members."""
    wanted = cursor.groups
    if cursor.initial:
        out: list[tuple[str, dict[str, Any] | None]] = []
        for group_id in sorted(wanted if wanted is not None else tenant.group_ids):
            if not tenant.has_group(group_id):
                continue
            members = [(group_id, _member(m, kind)) for m, kind in tenant.direct_members(group_id)]
            out += members or [(group_id, None)]
        return out
    net: dict[tuple[str, str], Any] = {}
    for change in tenant.membership_changes_between(cursor.after, cursor.upto):
        if wanted is None or change.group_id in wanted:
            net[(change.group_id, change.member_id)] = change
    entries = []
    for (group_id, member_id), change in sorted(net.items()):
        entry = _member(member_id, change.member_type)
        if not change.added:
            entry["@removed"] = {"reason": "deleted"}
        entries.append((group_id, entry))
    return entries


def _objects(tenant: Tenant, page: list[tuple[str, dict[str, Any] | None]], cursor: _Cursor) -> list[dict[str, Any]]:
    objects: dict[str, dict[str, Any]] = {}
    for group_id, entry in page:
        obj = objects.get(group_id)
        if obj is None:
            obj = objects[group_id] = {"id": group_id}
            if "displayName" in cursor.select or not cursor.select:
                obj["displayName"] = tenant.group_display_name(group_id)
            if "members" in cursor.select:
                obj["members@delta"] = []
        if entry is not None and "members" in cursor.select:
            obj["members@delta"].append(entry)
    return list(objects.values())


def _member(member_id: str, kind: str) -> dict[str, Any]:
    return {"@odata.type": f"#microsoft.graph.{kind}", "id": member_id}


def _filter(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    clauses = re.split(r"\s+or\s+", text.strip())
    ids = []
    for clause in clauses:
        found = _ID_CLAUSE.match(clause)
        if not found:
            raise GroupDeltaError(400, "Request_UnsupportedQuery", "Only $filter=id eq '{id}' [or id eq '{id}' ...] "
                                  "is supported by groups/delta.")
        ids.append(found.group(1).lower())
    if len(ids) > MAX_FILTER_IDS:
        raise GroupDeltaError(400, "Request_UnsupportedQuery", f"Too many ids in $filter: at most {MAX_FILTER_IDS}.")
    return tuple(sorted(set(ids)))


def _select(text: str | None) -> tuple[str, ...]:
    names = tuple(part.strip() for part in (text or "").split(",") if part.strip())
    unknown = [n for n in names if n not in SELECTABLE]
    if unknown:
        raise GroupDeltaError(400, "Request_BadRequest",
                              f"Could not find a property named '{unknown[0]}' on type 'microsoft.graph.group'.")
    return names


def _encode(cursor: _Cursor) -> str:
    payload = [list(cursor.groups) if cursor.groups is not None else None, list(cursor.select), cursor.after,
               cursor.upto, cursor.initial, cursor.offset, cursor.final]
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode(token: str, *, final: bool) -> _Cursor:
    try:
        groups, select, after, upto, initial, offset, was_final = json.loads(
            base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        cursor = _Cursor(tuple(groups) if groups is not None else None, tuple(select), int(after), int(upto),
                         bool(initial), int(offset), bool(was_final))
    except (binascii.Error, ValueError, TypeError):
        raise GroupDeltaError(400, "Request_BadRequest", "The delta or skip token is malformed.") from None
    if cursor.final != final:
        raise GroupDeltaError(400, "Request_BadRequest", "A skip token was sent as a delta token or the reverse.")
    return cursor
