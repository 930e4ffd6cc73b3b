"""The in-memory Entra tenant behind the Graph emulator.

Users (live, soft-deleted, hard-deleted), groups with direct members, service principals with app
roles, and app role assignments. Every user change that a users/delta query could show is appended to
`changes`, so a delta token is only a position in that log plus the selected properties.

Tests and the demo mutate the tenant directly while the emulator serves it from another thread, so
every public method takes the tenant's lock. Bad calls (unknown ids, duplicate UPNs) raise ValueError
or KeyError at once rather than leaving a half-applied change."""
from __future__ import annotations

import base64
import random
import threading
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Iterable, Literal

DEFAULT_ACCESS_ROLE_ID = "00000000-0000-0000-0000-000000000000"

ChangeKind = Literal["created", "updated", "soft_deleted", "restored", "hard_deleted"]
PrincipalType = Literal["User", "Group"]


@dataclass(frozen=True, slots=True)
class UserChangeRecord:
    """One entry of the change log. `properties` names what an update changed (empty otherwise)."""

    seq: int
    user_id: str
    kind: ChangeKind
    properties: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class MembershipChange:
    """One entry of the group membership log (what groups/delta reports as members@delta)."""

    seq: int
    group_id: str
    member_id: str
    member_type: Literal["user", "group"]
    added: bool


@dataclass(slots=True)
class Group:
    id: str
    display_name: str
    member_ids: list[str] = field(default_factory=list)  # users and groups, insertion order


@dataclass(frozen=True, slots=True)
class AppRoleRecord:
    id: str
    display_name: str
    value: str | None
    is_enabled: bool = True
    description: str | None = None  # None: the display name, as the portal fills it in
    allowed_member_types: tuple[str, ...] = ("User",)

    def to_json(self) -> dict[str, Any]:
        return {
            "allowedMemberTypes": list(self.allowed_member_types),
            "description": self.display_name if self.description is None else self.description,
            "displayName": self.display_name,
            "id": self.id,
            "isEnabled": self.is_enabled,
            "origin": "Application",
            "value": self.value,
        }

    def same_definition(self, other: "AppRoleRecord") -> bool:
        return self.to_json() == other.to_json()


class AppRoleUpdateRefused(ValueError):
    """A PATCH of appRoles that Graph refuses (HTTP 400), with Graph's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(slots=True)
class Application:
    """An app registration. Its app roles are the ones its service principal shows (one shared list)."""

    id: str
    app_id: str
    display_name: str
    service_principal: "ServicePrincipal"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "appId": self.app_id,
            "displayName": self.display_name,
            "signInAudience": "AzureADMyOrg",
            "appRoles": [role.to_json() for role in self.service_principal.app_roles],
        }


@dataclass(slots=True)
class ServicePrincipal:
    id: str
    app_id: str
    display_name: str
    app_roles: list[AppRoleRecord] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "appId": self.app_id,
            "displayName": self.display_name,
            "servicePrincipalType": "Application",
            "accountEnabled": True,
            "appRoles": [role.to_json() for role in self.app_roles],
        }


@dataclass(frozen=True, slots=True)
class Assignment:
    id: str
    app_role_id: str
    principal_id: str
    principal_type: PrincipalType
    principal_display_name: str
    resource_id: str
    resource_display_name: str
    created: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "deletedDateTime": None,
            "appRoleId": self.app_role_id,
            "createdDateTime": self.created,
            "principalDisplayName": self.principal_display_name,
            "principalId": self.principal_id,
            "principalType": self.principal_type,
            "resourceDisplayName": self.resource_display_name,
            "resourceId": self.resource_id,
        }


class Tenant:
    """One Entra tenant. Ids are generated from `seed`, so the same calls give the same ids."""

    def __init__(self, *, seed: int = 0, domain: str = "contoso.com") -> None:
        self.domain = domain
        self.lock = threading.RLock()
        self._rng = random.Random(seed)
        self._users: dict[str, dict[str, Any]] = {}
        self._upns: dict[str, str] = {}  # lower-case UPN of a live user → its id
        self._soft_deleted: dict[str, dict[str, Any]] = {}
        self._hard_deleted: set[str] = set()
        self._groups: dict[str, Group] = {}
        self._service_principals: dict[str, ServicePrincipal] = {}
        self._applications: dict[str, Application] = {}
        self._assignments: dict[str, Assignment] = {}
        self._changes: list[UserChangeRecord] = []
        self._membership_log: list[MembershipChange] = []

    # ----- ids and the change log -------------------------------------------------------------
    def new_id(self) -> str:
        """A fresh object id. Seeded, so a run is repeatable; an id already used, even by a user since
        hard-deleted (Entra never reuses one), is skipped: a seeder may draw from a generator with the
        same seed."""
        with self.lock:
            while True:
                candidate = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
                if not self._exists(candidate) and candidate not in self._hard_deleted:
                    return candidate

    def _new_assignment_id(self) -> str:
        # Real assignment ids are 43-character base64url strings, not GUIDs.
        return base64.urlsafe_b64encode(self._rng.getrandbits(256).to_bytes(32, "big")).decode().rstrip("=")

    def _record(self, user_id: str, kind: ChangeKind, properties: Iterable[str] = ()) -> None:
        self._changes.append(UserChangeRecord(len(self._changes) + 1, user_id, kind, frozenset(properties)))

    @property
    def position(self) -> int:
        """The sequence number of the newest change (0 before any)."""
        with self.lock:
            return len(self._changes)

    def changes_between(self, after: int, upto: int) -> list[UserChangeRecord]:
        with self.lock:
            return self._changes[after:upto]

    # ----- users ------------------------------------------------------------------------------
    def add_user(self, *, id: str | None = None, **attributes: Any) -> str:
        """Create a user from Graph property names; userPrincipalName and displayName are required."""
        for required in ("userPrincipalName", "displayName"):
            if not attributes.get(required):
                raise ValueError(f"a user needs {required}")
        with self.lock:
            user_id = (id or self.new_id()).lower()
            if self._exists(user_id):
                raise ValueError(f"object {user_id} already exists")
            upn = attributes["userPrincipalName"]
            if self.find_user(upn) is not None:
                raise ValueError(f"userPrincipalName {upn!r} is already taken")
            attributes.setdefault("accountEnabled", True)
            self._users[user_id] = {"id": user_id, **attributes}
            self._upns[upn.lower()] = user_id
            self._record(user_id, "created")
            return user_id

    def update_user(self, user_id: str, **attributes: Any) -> frozenset[str]:
        """Set properties (None clears one, as a PATCH with null does); returns what changed. Only
        a real change is logged, as Graph only reports changed objects."""
        for required in ("userPrincipalName", "displayName"):
            if required in attributes and not attributes[required]:
                raise ValueError(f"{required} cannot be cleared")
        with self.lock:
            user = self._live_user(user_id)
            upn = attributes.get("userPrincipalName")
            if upn is not None:
                other = self.find_user(upn)
                if other is not None and other["id"] != user["id"]:
                    raise ValueError(f"userPrincipalName {upn!r} is already taken")
            changed = frozenset(name for name, value in attributes.items() if user.get(name) != value or name not in user)
            changed -= {"id"}
            if changed:
                if "userPrincipalName" in changed:
                    del self._upns[user["userPrincipalName"].lower()]
                    self._upns[attributes["userPrincipalName"].lower()] = user["id"]
                user.update({name: attributes[name] for name in changed})
                self._record(user["id"], "updated", changed)
            return changed

    def soft_delete_user(self, user_id: str) -> None:
        """Move the user to deleted items; restorable with restore_user."""
        with self.lock:
            user = self._live_user(user_id)
            self._soft_deleted[user["id"]] = self._users.pop(user["id"])
            del self._upns[user["userPrincipalName"].lower()]
            self._record(user["id"], "soft_deleted")

    def restore_user(self, user_id: str) -> None:
        with self.lock:
            key = user_id.lower()
            if key not in self._soft_deleted:
                raise KeyError(f"no soft-deleted user {user_id}")
            upn = self._soft_deleted[key]["userPrincipalName"]
            if upn.lower() in self._upns:
                raise ValueError(f"userPrincipalName {upn!r} is taken by another user")
            self._users[key] = self._soft_deleted.pop(key)
            self._upns[upn.lower()] = key
            self._record(key, "restored")

    def hard_delete_user(self, user_id: str) -> None:
        """Delete permanently (from live or deleted items), dropping memberships and assignments."""
        with self.lock:
            key = user_id.lower()
            live = self._users.pop(key, None)
            if live is not None:
                del self._upns[live["userPrincipalName"].lower()]
            elif self._soft_deleted.pop(key, None) is None:
                raise KeyError(f"no user {user_id}")
            self._hard_deleted.add(key)
            for group in self._groups.values():
                if key in group.member_ids:
                    group.member_ids.remove(key)
                    self._log_membership(group.id, key, added=False)
            for assignment in [a for a in self._assignments.values() if a.principal_id == key]:
                del self._assignments[assignment.id]
            self._record(key, "hard_deleted")

    def find_user(self, id_or_upn: str) -> dict[str, Any] | None:
        """A live user by object id or userPrincipalName (case-insensitive), as a copy."""
        with self.lock:
            key = id_or_upn.lower()
            user = self._users.get(self._upns.get(key, key))
            return dict(user) if user is not None else None

    def user_state(self, user_id: str) -> Literal["live", "soft_deleted", "hard_deleted", "unknown"]:
        with self.lock:
            key = user_id.lower()
            if key in self._users:
                return "live"
            if key in self._soft_deleted:
                return "soft_deleted"
            return "hard_deleted" if key in self._hard_deleted else "unknown"

    def live_users_after(self, last_id: str, limit: int) -> list[dict[str, Any]]:
        """Keyset page of live users ordered by id, so users deleted mid-sync shift nothing."""
        with self.lock:
            ids = sorted(key for key in self._users if key > last_id)[:limit]
            return [dict(self._users[key]) for key in ids]

    @property
    def user_ids(self) -> list[str]:
        with self.lock:
            return list(self._users)

    def _live_user(self, user_id: str) -> dict[str, Any]:
        user = self._users.get(user_id.lower())
        if user is None:
            raise KeyError(f"no live user {user_id}")
        return user

    def _exists(self, object_id: str) -> bool:
        return (
            object_id in self._users
            or object_id in self._soft_deleted
            or object_id in self._groups
            or object_id in self._service_principals
            or object_id in self._applications
        )

    # ----- groups -----------------------------------------------------------------------------
    def add_group(self, display_name: str, *, id: str | None = None) -> str:
        with self.lock:
            group_id = (id or self.new_id()).lower()
            if self._exists(group_id):
                raise ValueError(f"object {group_id} already exists")
            self._groups[group_id] = Group(group_id, display_name)
            return group_id

    def add_member(self, group_id: str, member_id: str) -> None:
        """Add a user or a group as a direct member (idempotent)."""
        with self.lock:
            group = self._group(group_id)
            key = member_id.lower()
            if key not in self._users and key not in self._groups:
                raise KeyError(f"no user or group {member_id}")
            if key == group.id:
                raise ValueError("a group cannot be a member of itself")
            if key not in group.member_ids:
                group.member_ids.append(key)
                self._log_membership(group.id, key, added=True)

    def remove_member(self, group_id: str, member_id: str) -> None:
        with self.lock:
            group = self._group(group_id)
            try:
                group.member_ids.remove(member_id.lower())
            except ValueError:
                raise KeyError(f"{member_id} is not a member of {group_id}") from None
            self._log_membership(group.id, member_id.lower(), added=False)

    def group_members(self, group_id: str) -> list[dict[str, Any]]:
        """Direct members that exist now (soft-deleted users are hidden), with their @odata.type."""
        with self.lock:
            members = []
            for key in self._group(group_id).member_ids:
                if key in self._users:
                    members.append({"@odata.type": "#microsoft.graph.user", **self._users[key]})
                elif key in self._groups:
                    members.append(
                        {"@odata.type": "#microsoft.graph.group", "id": key, "displayName": self._groups[key].display_name}
                    )
            return members

    def transitive_group_ids(self, member_id: str) -> set[str]:
        """Every group the user or group is a member of, directly or through nested groups."""
        with self.lock:
            found: set[str] = set()
            frontier = {member_id.lower()}
            while frontier:
                parents = {g.id for g in self._groups.values() if frontier & set(g.member_ids)} - found
                found |= parents
                frontier = parents
            return found

    def _log_membership(self, group_id: str, member_id: str, *, added: bool) -> None:
        kind: Literal["user", "group"] = "group" if member_id in self._groups else "user"
        self._membership_log.append(MembershipChange(len(self._membership_log) + 1, group_id, member_id, kind, added))

    @property
    def membership_position(self) -> int:
        with self.lock:
            return len(self._membership_log)

    def membership_changes_between(self, after: int, upto: int) -> list[MembershipChange]:
        with self.lock:
            return self._membership_log[after:upto]

    def direct_members(self, group_id: str) -> list[tuple[str, Literal["user", "group"]]]:
        """(id, "user" | "group") of the group's direct members, soft-deleted users included (as
        groups/delta still lists them until they are deleted for good)."""
        with self.lock:
            return [(m, "group" if m in self._groups else "user") for m in self._group(group_id).member_ids]

    def _group(self, group_id: str) -> Group:
        group = self._groups.get(group_id.lower())
        if group is None:
            raise KeyError(f"no group {group_id}")
        return group

    @property
    def group_ids(self) -> list[str]:
        with self.lock:
            return list(self._groups)

    def group_display_name(self, group_id: str) -> str:
        with self.lock:
            return self._group(group_id).display_name

    def transitive_members(self, group_id: str) -> list[dict[str, Any]]:
        """Members at any depth that exist now, each once, with their @odata.type (users and groups)."""
        with self.lock:
            seen: dict[str, dict[str, Any]] = {}
            frontier = [self._group(group_id).id]
            while frontier:
                for member in self.group_members(frontier.pop()):
                    if member["id"] not in seen:
                        seen[member["id"]] = member
                        if member["@odata.type"] == "#microsoft.graph.group":
                            frontier.append(member["id"])
            return list(seen.values())

    def has_group(self, group_id: str) -> bool:
        with self.lock:
            return group_id.lower() in self._groups

    # ----- service principals, app roles, assignments -------------------------------------------
    def add_service_principal(self, display_name: str, *, id: str | None = None, app_id: str | None = None) -> str:
        with self.lock:
            sp_id = (id or self.new_id()).lower()
            if self._exists(sp_id):
                raise ValueError(f"object {sp_id} already exists")
            self._service_principals[sp_id] = ServicePrincipal(sp_id, (app_id or self.new_id()).lower(), display_name)
            return sp_id

    def add_app_role(
        self, service_principal_id: str, display_name: str, *, value: str | None = None, id: str | None = None,
        is_enabled: bool = True,
    ) -> str:
        if value is not None and " " in value:
            raise ValueError("an app role value cannot contain spaces")
        with self.lock:
            sp = self.service_principal(service_principal_id)
            role = AppRoleRecord((id or self.new_id()).lower(), display_name, value, is_enabled)
            if any(existing.id == role.id for existing in sp.app_roles):
                raise ValueError(f"app role {role.id} already exists")
            sp.app_roles.append(role)
            return role.id

    def service_principal(self, id_or_app_id: str, *, by_app_id: bool = False) -> ServicePrincipal:
        with self.lock:
            key = id_or_app_id.lower()
            sp = (
                next((s for s in self._service_principals.values() if s.app_id == key), None)
                if by_app_id
                else self._service_principals.get(key)
            )
            if sp is None:
                raise KeyError(f"no service principal {id_or_app_id}")
            return sp

    def add_application(self, service_principal_id: str, *, id: str | None = None) -> str:
        """Register the application object behind a service principal (same appId); returns its object id."""
        with self.lock:
            sp = self.service_principal(service_principal_id)
            app_id = (id or self.new_id()).lower()
            if self._exists(app_id) or any(a.app_id == sp.app_id for a in self._applications.values()):
                raise ValueError(f"object {app_id} or an application for appId {sp.app_id} already exists")
            self._applications[app_id] = Application(app_id, sp.app_id, sp.display_name, sp)
            return app_id

    def application(self, id_or_app_id: str, *, by_app_id: bool = False) -> Application:
        with self.lock:
            key = id_or_app_id.lower()
            app = (next((a for a in self._applications.values() if a.app_id == key), None) if by_app_id
                   else self._applications.get(key))
            if app is None:
                raise KeyError(f"no application {id_or_app_id}")
            return app

    def replace_app_roles(self, application_id: str, roles: list[AppRoleRecord]) -> None:
        """PATCH appRoles: the list replaces the whole collection, with Graph's rules. A role that is
        removed or changed must have been disabled by an earlier update (assignments may still use it);
        ids and values are unique. Raises AppRoleUpdateRefused and changes nothing then."""
        with self.lock:
            app = self.application(application_id)
            ids = [role.id for role in roles]
            if len(set(ids)) != len(ids):
                raise AppRoleUpdateRefused("Request_BadRequest", "Two app roles have the same id.")
            values = [role.value.casefold() for role in roles if role.value]
            if len(set(values)) != len(values):
                raise AppRoleUpdateRefused("Request_BadRequest",
                                           "Property 'value' of app roles must be unique; a value is used twice.")
            wanted = {role.id: role for role in roles}
            for current in app.service_principal.app_roles:
                if not current.is_enabled:
                    continue
                new = wanted.get(current.id)
                if new is None or not (new.same_definition(current)
                                       or (not new.is_enabled and new.same_definition(replace(current, is_enabled=False)))):
                    raise AppRoleUpdateRefused("CannotDeleteOrUpdateEnabledEntitlement",
                                               "Permission (scope or role) cannot be deleted or updated unless "
                                               "disabled first.")
            app.service_principal.app_roles[:] = roles

    def assign(self, service_principal_id: str, principal_id: str, app_role_id: str) -> str:
        """Grant an app role of the service principal to a user or a group; returns the assignment id."""
        with self.lock:
            sp = self.service_principal(service_principal_id)
            role_id = app_role_id.lower()
            if role_id != DEFAULT_ACCESS_ROLE_ID and all(role.id != role_id for role in sp.app_roles):
                raise ValueError(f"app role {app_role_id} is not defined on {sp.display_name}")
            key = principal_id.lower()
            if key in self._users:
                principal_type: PrincipalType = "User"
                principal_name = self._users[key]["displayName"]
            elif key in self._groups:
                principal_type, principal_name = "Group", self._groups[key].display_name
            else:
                raise KeyError(f"no user or group {principal_id}")
            if any(a.principal_id == key and a.app_role_id == role_id and a.resource_id == sp.id
                   for a in self._assignments.values()):
                raise ValueError("Permission being assigned already exists on the object")
            assignment = Assignment(
                self._new_assignment_id(), role_id, key, principal_type, principal_name, sp.id, sp.display_name,
                datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            )
            self._assignments[assignment.id] = assignment
            return assignment.id

    def unassign(self, assignment_id: str) -> None:
        with self.lock:
            if self._assignments.pop(assignment_id, None) is None:
                raise KeyError(f"no app role assignment {assignment_id}")

    def assignments_of(self, principal_id: str) -> list[Assignment]:
        """Assignments whose principal is this user or group (any resource)."""
        with self.lock:
            key = principal_id.lower()
            return [a for a in self._assignments.values() if a.principal_id == key]

    def assigned_to(self, service_principal_id: str) -> list[Assignment]:
        """appRoleAssignedTo: assignments to principals that exist now (soft-deleted ones are hidden)."""
        with self.lock:
            sp = self.service_principal(service_principal_id)
            return [
                a for a in self._assignments.values()
                if a.resource_id == sp.id and (a.principal_id in self._users or a.principal_id in self._groups)
            ]

    def user_app_role_assignments(self, user_id: str) -> list[Assignment]:
        """As Graph documents users/{id}/appRoleAssignments: the user's own assignments plus those of
        groups it is a *direct* member of (nested groups do not count)."""
        with self.lock:
            key = self._live_user(user_id)["id"]
            group_ids = [g.id for g in self._groups.values() if key in g.member_ids]
            return [a for a in self._assignments.values() if a.principal_id == key or a.principal_id in group_ids]
