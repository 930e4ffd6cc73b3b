"""Decide what to do for one user: compare the desired Salesforce state with the current one.

Pure functions over plain values (functional core): the services gather inputs, call `plan_user`, and
apply the returned `Operation`. The same object feeds logs, the dry-run plan and the tests."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Mapping, Sequence

from .errors import PermanentError
from .models import DEFAULT_ACCESS_ROLE_ID, EntraUserState, SalesforceUser, UserLink
from .scoping import ScopingFilters

Action = Literal["create", "update", "deactivate", "reactivate", "noop", "skip"]
WRITE_ACTIONS = frozenset({"create", "update", "deactivate", "reactivate"})


@dataclass(frozen=True, slots=True)
class Operation:
    action: Action
    entra_id: str
    salesforce_id: str | None = None
    changes: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)  # field → (old, new)
    record: Mapping[str, Any] = field(default_factory=dict)  # the payload to send
    reason: str = ""

    @property
    def is_write(self) -> bool:
        return self.action in WRITE_ACTIONS

    def describe(self) -> str:
        """A one-line, PII-free description for logs: ids and field names, never values."""
        target = f" sf={self.salesforce_id}" if self.salesforce_id else ""
        fields = f" fields={','.join(sorted(self.changes))}" if self.changes else ""
        return f"{self.action} entra={self.entra_id}{target}{fields} ({self.reason})"


def out_of_scope_reason(state: EntraUserState, scoping: ScopingFilters | None = None) -> str | None:
    """Why the user should not have an active Salesforce user, or None when it should. With scoping
    filters, an assigned user that no filter holds for is out of scope as well. An accountEnabled that
    is not a boolean raises PermanentError: the state cannot be decided."""
    if state.user is None:
        return "deleted in Entra"
    enabled = state.user.get("accountEnabled")
    if enabled is not None and not isinstance(enabled, bool):
        # "false" as a string is truthy: guessing could enable a disabled account (or deactivate one).
        raise PermanentError("InvalidEntraAttribute", "accountEnabled is not a boolean", system="entra",
                             fields=["accountEnabled"])
    if enabled is False:
        return "disabled in Entra"
    if not (state.app_role_ids - {DEFAULT_ACCESS_ROLE_ID}):
        return "not assigned to the Salesforce app with a role"
    if scoping is not None and not scoping.in_scope(state.user):
        return "outside every scoping filter"
    return None


def _differs(field_name: str, current: Any, desired: Any) -> bool:
    if field_name == "Username" and isinstance(current, str) and isinstance(desired, str):
        return current.lower() != desired.lower()  # Salesforce compares usernames case-insensitively
    return current != desired


def plan_user(
    entra_id: str,
    desired: Mapping[str, Any] | None,
    current: SalesforceUser | None,
    link: UserLink | None,
    *,
    create_only: frozenset[str] = frozenset(),
    scope_reason: str = "",
) -> Operation:
    """`desired` is the mapped field set (ProfileId resolved), or None when the user is out of scope.

    Never deletes: out-of-scope users are deactivated. An Email change Salesforce holds pending
    confirmation (link.pending_email) is not sent again."""
    if desired is None:
        if current is None:
            return Operation("skip", entra_id, reason=scope_reason or "out of scope and not in Salesforce")
        if current.get("IsActive"):
            return Operation(
                "deactivate", entra_id, current.id, {"IsActive": (True, False)}, {"Id": current.id, "IsActive": False},
                reason=scope_reason or "out of scope",
            )
        return Operation("noop", entra_id, current.id, reason="already inactive")

    if current is None:
        record = {**desired, "IsActive": True}
        return Operation("create", entra_id, None, {k: (None, v) for k, v in record.items()}, record, "in scope, no match")

    changes: dict[str, tuple[Any, Any]] = {}
    for name, value in desired.items():
        if name in create_only:
            continue
        if name == "Email" and link is not None and link.pending_email == value:
            continue  # Salesforce applies it once the new owner confirms; re-sending changes nothing
        if _differs(name, current.get(name), value):
            changes[name] = (current.get(name), value)
    reactivate = not current.get("IsActive")
    if reactivate:
        changes["IsActive"] = (False, True)
    if not changes:
        return Operation("noop", entra_id, current.id, reason="in sync")
    record = {"Id": current.id, **{k: new for k, (_, new) in changes.items()}}
    action: Action = "reactivate" if reactivate else "update"
    return Operation(action, entra_id, current.id, changes, record, "back in scope" if reactivate else "attributes changed")


MatchIndex = Mapping[str, Mapping[str, Sequence[SalesforceUser]]]  # field → lower-cased value → users


def index_for_matching(found: Iterable[SalesforceUser], fields: Sequence[str]) -> dict[str, dict[str, list[SalesforceUser]]]:
    """The Salesforce users found, by each matching field's value (case-insensitive)."""
    index: dict[str, dict[str, list[SalesforceUser]]] = {f: {} for f in fields}
    for user in found:
        for name in fields:
            value = user.get(name)
            if value not in (None, ""):
                index[name].setdefault(str(value).lower(), []).append(user)
    return index


def match_by_precedence(
    link: UserLink | None,
    match_values: Sequence[tuple[str, Any]],
    by_id: Mapping[str, SalesforceUser],
    index: MatchIndex,
) -> SalesforceUser | None:
    """Matching precedence, as the connector does it: the stored link wins (sticky); otherwise each
    (field, value) of `match_values`, in priority order, is looked up and the first field with a match
    decides. A value that matches several Salesforce users (Email is not unique) is an error rather
    than a guess. Pass no match_values for out-of-scope users: only linked users are deactivated."""
    if link is not None and link.salesforce_id in by_id:
        return by_id[link.salesforce_id]
    for name, value in match_values:
        if value in (None, ""):
            continue
        users = index.get(name, {}).get(str(value).lower(), ())
        if len(users) > 1:
            raise PermanentError(
                "AmbiguousMatch", f"{len(users)} Salesforce users have this {name} "
                f"({', '.join(sorted(u.id for u in users))}); link one by hand or match on a unique field",
                system="matching", fields=(name,),
            )
        if users:
            return users[0]
    return None
