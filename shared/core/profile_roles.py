"""Salesforce profiles → app roles of the Entra application, as the connector's profile import does.

A role this app manages carries the profile's 18-character Id as its `value`: unique, free of spaces
(a role value allows none), case-insensitively unique, and unchanged when the profile is renamed. Its
display name is the profile name, which is what provisioning maps to ProfileId. Every other role
("msiam_access", roles made by hand) is left exactly as it is.

The rules: a profile without a role gets a new one; a role whose profile is gone is disabled, never
removed (Graph refuses to remove an enabled role, and assignments may still use it); a role whose
profile came back or was renamed is re-enabled or renamed; nothing is ever duplicated, by value or by
an enabled role of the same display name. Graph refuses to change an enabled role, so a rename is two
updates: disable, then change and enable (`disable_first`)."""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Callable, Literal, Sequence

from .errors import PermanentError
from .models import AppRoleDefinition, SalesforceProfile

# Profile user types a user created without a Contact can have: full and platform licences, and Chatter.
ASSIGNABLE_USER_TYPES = ("Standard", "CsnOnly")
_PROFILE_ID = re.compile(r"^00e[0-9A-Za-z]{15}$")

RoleAction = Literal["added", "disabled", "re-enabled", "renamed", "unchanged", "not managed", "name taken"]


@dataclass(frozen=True, slots=True)
class RoleChange:
    action: RoleAction
    display_name: str
    value: str | None
    role_id: str
    is_enabled: bool

    @property
    def is_write(self) -> bool:
        return self.action in ("added", "disabled", "re-enabled", "renamed")


@dataclass(frozen=True, slots=True)
class RoleImportPlan:
    changes: tuple[RoleChange, ...]
    roles: tuple[AppRoleDefinition, ...]  # the whole collection after the import
    disable_first: tuple[AppRoleDefinition, ...] | None = None  # an update to send before `roles`, if any

    @property
    def needs_write(self) -> bool:
        return any(change.is_write for change in self.changes)

    def count(self, action: RoleAction) -> int:
        return sum(1 for change in self.changes if change.action == action)


def is_managed(role: AppRoleDefinition) -> bool:
    """A role the import made: its value is an 18-character Salesforce profile Id."""
    return bool(role.value) and bool(_PROFILE_ID.match(role.value or ""))


def role_description(profile: SalesforceProfile) -> str:
    return f"Salesforce profile {profile.name}"


def plan_profile_roles(current: Sequence[AppRoleDefinition], profiles: Sequence[SalesforceProfile],
                       new_role_id: Callable[[], str]) -> RoleImportPlan:
    """What the application's appRoles should become for these profiles. Pure: `new_role_id` gives the
    GUID of each added role. An empty profile list never disables every managed role: it is refused."""
    by_value = {profile.id.casefold(): profile for profile in profiles}
    if not by_value and any(is_managed(role) and role.is_enabled for role in current):
        raise PermanentError(
            "NoProfilesToImport",
            "Salesforce returned no assignable profiles; refusing to disable every imported app role "
            "(check that the integration user may view profiles)", system="salesforce")
    bad = [profile.id for profile in profiles if not _PROFILE_ID.match(profile.id)]
    if bad:
        raise PermanentError("MalformedProfileId", f"not 18-character profile ids: {bad[:3]}", system="salesforce")

    changes: list[RoleChange] = []
    final: list[AppRoleDefinition] = []
    first: list[AppRoleDefinition] = []
    seen_values: set[str] = set()
    for role in current:
        key = (role.value or "").casefold()
        if not is_managed(role) or key in seen_values:
            final.append(role)
            first.append(role)
            changes.append(RoleChange("not managed", role.display_name, role.value, role.id, role.is_enabled))
            continue
        seen_values.add(key)
        profile = by_value.get(key)
        if profile is None:
            wanted = replace(role, is_enabled=False)
            action: RoleAction = "disabled" if role.is_enabled else "unchanged"
        else:
            wanted = replace(role, display_name=profile.name, description=role_description(profile), is_enabled=True)
            if wanted == role:
                action = "unchanged"
            else:
                action = "re-enabled" if not role.is_enabled else "renamed"
        final.append(wanted)
        # An enabled role that changes other than by being disabled must be disabled in an update before.
        first.append(replace(role, is_enabled=False) if role.is_enabled and wanted != role else role)
        changes.append(RoleChange(action, wanted.display_name, wanted.value, wanted.id, wanted.is_enabled))

    taken_names = {role.display_name.casefold() for role in final if role.is_enabled}
    for profile in sorted(profiles, key=lambda p: p.name.casefold()):
        key = profile.id.casefold()
        if key in seen_values:
            continue
        seen_values.add(key)
        if profile.name.casefold() in taken_names:
            existing = next(r for r in final if r.is_enabled and r.display_name.casefold() == profile.name.casefold())
            changes.append(RoleChange("name taken", profile.name, existing.value, existing.id, True))
            continue
        taken_names.add(profile.name.casefold())
        role = AppRoleDefinition(new_role_id(), profile.name, profile.id, role_description(profile), ("User",), True)
        final.append(role)
        changes.append(RoleChange("added", role.display_name, role.value, role.id, True))

    renamed_while_enabled = any(c.action == "renamed" for c in changes)
    return RoleImportPlan(tuple(changes), tuple(final), tuple(first) if renamed_while_enabled else None)
