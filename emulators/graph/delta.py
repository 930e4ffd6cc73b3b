"""users/delta over the tenant's change log.

A token is base64url JSON holding everything the next request needs (selected properties, the log
window, the page cursor and the token generation), so the server keeps no per-client state, as
Graph's own tokens do. Two kinds of round:
- initial sync: every live user, paged by id (keyset, so a deletion mid-sync skips no one); users
  that change meanwhile are in the log after `upto` and show up again in the next round (replay).
- delta round: every user with a relevant change in the log window (after, upto], shown as it is
  *now*: a live user in full, otherwise `@removed` changed (soft-deleted) or deleted (permanent)."""
from __future__ import annotations

import base64
import binascii
import json
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

from .tenant import Tenant

# What users/delta and users/{id} return without $select: Graph's default user property set (note:
# no accountEnabled; callers that need it must select it, as against real Graph).
DEFAULT_SELECT = (
    "businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone", "officeLocation",
    "preferredLanguage", "surname", "userPrincipalName",
)


class InvalidToken(Exception):
    """A token that could never have been issued here."""


class ExpiredToken(Exception):
    """A token from an older generation (after `DeltaKnobs.expire_tokens`)."""


@dataclass(frozen=True, slots=True)
class DeltaCursor:
    select: tuple[str, ...]
    generation: int
    after: int  # log position the round starts after (0 for an initial sync)
    upto: int  # log position the round ends at; the deltaLink continues from here
    initial: bool
    last_id: str = ""  # initial sync: the last user id served
    offset: int = 0  # delta round: how many changed users were served
    final: bool = False  # a deltaLink rather than a nextLink
    nonce: int = 0  # makes each empty-page token distinct


def encode(cursor: DeltaCursor) -> str:
    payload = [list(cursor.select), cursor.generation, cursor.after, cursor.upto, cursor.initial,
               cursor.last_id, cursor.offset, cursor.final, cursor.nonce]
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")


def decode(token: str, generation: int) -> DeltaCursor:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        select, gen, after, upto, initial, last_id, offset, final, nonce = json.loads(raw)
        cursor = DeltaCursor(tuple(select), int(gen), int(after), int(upto), bool(initial), str(last_id),
                             int(offset), bool(final), int(nonce))
    except (binascii.Error, ValueError, TypeError) as exc:
        raise InvalidToken(str(exc)) from None
    if cursor.generation != generation:
        raise ExpiredToken()
    return cursor


@dataclass(slots=True)
class DeltaKnobs:
    """Behaviours tests switch on. Counts are consumed one request at a time. `served` counts what the
    knobs did: "gone", "expired_token", "empty_page" responses and "replayed_object"s."""

    page_size: int = 100
    generation: int = 0
    gone_requests: int = 0  # the next N token requests get 410 Gone with a Location
    empty_pages: int = 0  # the next N page requests return an empty page that still has a nextLink
    replay: int = 0  # each page after the first repeats this many objects of the previous page
    served: Counter[str] = field(default_factory=Counter)

    def expire_tokens(self) -> None:
        """Every token issued so far now fails with 400 syncStateNotFound."""
        self.generation += 1


@dataclass(frozen=True, slots=True)
class DeltaResult:
    objects: list[dict[str, Any]]
    next_cursor: DeltaCursor
    replayed: int = 0  # objects at the start of `objects` that the previous page had already served


def first_cursor(tenant: Tenant, select: Sequence[str] | None, generation: int) -> DeltaCursor:
    return DeltaCursor(tuple(select or ()), generation, 0, tenant.position, initial=True)


def latest_cursor(tenant: Tenant, select: Sequence[str] | None, generation: int) -> DeltaCursor:
    """`$deltatoken=latest`: a deltaLink at the current position, no data."""
    position = tenant.position
    return DeltaCursor(tuple(select or ()), generation, position, position, initial=False, final=True)


def next_round(cursor: DeltaCursor, tenant: Tenant) -> DeltaCursor:
    """A stored deltaLink was followed: a new round covering what changed since it was issued."""
    return replace(cursor, after=cursor.upto, upto=tenant.position, initial=False, last_id="", offset=0, final=False)


def page(tenant: Tenant, cursor: DeltaCursor, knobs: DeltaKnobs) -> DeltaResult:
    size = max(1, knobs.page_size)
    replay = min(knobs.replay, size - 1)  # a page must still move forward
    if cursor.initial:
        start = cursor.last_id
        if replay and start:
            start = _replay_start(tenant, start, replay)
        users = tenant.live_users_after(start, size)
        objects = [_shape(user, cursor.select) for user in users]
        replayed = sum(1 for user in users if cursor.last_id and user["id"] <= cursor.last_id)
        if len(users) < size:
            return DeltaResult(objects, _delta_link(cursor), replayed)
        return DeltaResult(objects, replace(cursor, last_id=users[-1]["id"]), replayed)
    changed = _changed_user_ids(tenant, cursor)
    start = max(0, cursor.offset - replay)
    window = changed[start:start + size]
    objects = [_current(tenant, user_id, cursor.select) for user_id in window]
    end = start + len(window)
    replayed = min(len(window), cursor.offset - start)
    if end >= len(changed):
        return DeltaResult(objects, _delta_link(cursor), replayed)
    return DeltaResult(objects, replace(cursor, offset=end), replayed)


def _delta_link(cursor: DeltaCursor) -> DeltaCursor:
    return replace(cursor, final=True, last_id="", offset=0)


def _replay_start(tenant: Tenant, last_id: str, replay: int) -> str:
    """Back up `replay` users before last_id so the next page repeats them."""
    with tenant.lock:
        earlier = sorted(uid for uid in tenant.user_ids if uid <= last_id)
    return earlier[-replay - 1] if len(earlier) > replay else ""


def _changed_user_ids(tenant: Tenant, cursor: DeltaCursor) -> list[str]:
    """Users with a change in (after, upto] that this selection tracks, in first-change order."""
    select = set(cursor.select)
    seen: dict[str, None] = {}
    for change in tenant.changes_between(cursor.after, cursor.upto):
        if change.kind != "updated" or not select or change.properties & select:
            seen.setdefault(change.user_id, None)
    return list(seen)


def _current(tenant: Tenant, user_id: str, select: Sequence[str]) -> dict[str, Any]:
    user = tenant.find_user(user_id)
    if user is not None:
        return _shape(user, select)
    reason = "changed" if tenant.user_state(user_id) == "soft_deleted" else "deleted"
    return {"id": user_id, "@removed": {"reason": reason}}


def _shape(user: dict[str, Any], select: Sequence[str]) -> dict[str, Any]:
    """Selected properties that are set (null included); a never-set property is omitted."""
    names = select or DEFAULT_SELECT
    shaped = {name: user[name] for name in names if name in user and name != "id"}
    shaped["id"] = user["id"]
    return shaped
