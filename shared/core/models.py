"""Plain domain values shared by every layer. No SDK types, no I/O."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Mapping

# The "no specific role" app role id Entra uses for Default Access assignments.
DEFAULT_ACCESS_ROLE_ID = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True, slots=True)
class EntraUser:
    """One Entra user as Graph returns it: Graph property names to JSON values."""

    id: str
    attributes: Mapping[str, Any] = field(default_factory=dict)

    def get(self, name: str, default: Any = None) -> Any:
        """A property, or a value inside a complex one by its dotted path (employeeOrgData.division)."""
        if name in self.attributes or "." not in name:
            return self.attributes.get(name, default)
        value: Any = self.attributes
        for part in name.split("."):
            if not isinstance(value, Mapping) or part not in value:
                return default
            value = value[part]
        return value


# A Graph user property, or a dotted path into a complex one: employeeOrgData.costCenter,
# onPremisesExtensionAttributes.extensionAttribute1. Mappings and scoping filters read these.
PROPERTY_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


def selectable(path: str) -> str:
    """What Graph's $select takes for a property path: the top-level property (Graph returns a complex
    property whole; its parts cannot be selected on their own)."""
    return path.split(".", 1)[0]


@dataclass(frozen=True, slots=True)
class AppRole:
    """An app role of the Salesforce enterprise app; its display name is a Salesforce profile name."""

    id: str
    display_name: str
    value: str | None = None
    is_enabled: bool = True


@dataclass(frozen=True, slots=True)
class AppRoleDefinition:
    """An app role as the application object defines it: every property a PATCH of appRoles sends back
    (the collection is replaced whole, so roles this app does not manage must round-trip unchanged)."""

    id: str
    display_name: str
    value: str | None
    description: str | None
    allowed_member_types: tuple[str, ...]
    is_enabled: bool


@dataclass(frozen=True, slots=True)
class EntraApplication:
    """The application object (app registration) behind the Salesforce enterprise app."""

    object_id: str
    app_id: str
    app_roles: tuple[AppRoleDefinition, ...]


@dataclass(frozen=True, slots=True)
class SalesforceProfile:
    """A Salesforce profile: `user_type` is the category of its user licence (Standard, CsnOnly, ...)."""

    id: str
    name: str
    user_type: str


@dataclass(frozen=True, slots=True)
class SalesforceRole:
    """A Salesforce Role (UserRole) of the role hierarchy; Name need not be unique, DeveloperName is."""

    id: str
    name: str
    developer_name: str


@dataclass(frozen=True, slots=True)
class AppRoleAssignment:
    """One row of the service principal's appRoleAssignedTo."""

    id: str
    principal_id: str
    principal_type: Literal["User", "Group", "ServicePrincipal"]
    app_role_id: str


@dataclass(frozen=True, slots=True)
class EntraUserState:
    """What provisioning needs to know about one user *now*.

    `user` is None when the user no longer exists (hard-deleted or not found). `app_role_ids` are the
    roles of the Salesforce app granted to the user directly or through a group it is a direct member of.
    `member_of` are those of the asked-for groups (the permission-set mapping's) the user is a member
    of, directly or through nested groups; empty when none were asked for.
    """

    user_id: str
    user: EntraUser | None
    app_role_ids: frozenset[str] = frozenset()
    member_of: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class UserChange:
    """One object of a users/delta page. `removed` is Graph's @removed reason: 'changed' (soft delete)
    or 'deleted' (permanent), None for a created or updated user."""

    user_id: str
    removed: str | None = None


@dataclass(frozen=True, slots=True)
class DeltaPage:
    """One page of users/delta. Exactly one of next_link and delta_link is set."""

    changes: tuple[UserChange, ...]
    next_link: str | None = None
    delta_link: str | None = None


@dataclass(frozen=True, slots=True)
class MemberChange:
    """One entry of groups/delta's members@delta: a user or group added to, or removed from, a group."""

    group_id: str
    member_id: str
    member_type: Literal["user", "group", "other"]
    removed: bool = False


@dataclass(frozen=True, slots=True)
class GroupDeltaPage:
    """One page of groups/delta (membership only). Exactly one of next_link and delta_link is set."""

    changes: tuple[MemberChange, ...]
    next_link: str | None = None
    delta_link: str | None = None


@dataclass(frozen=True, slots=True)
class SalesforceUser:
    """A Salesforce User record: API field names to values (always includes Id)."""

    id: str
    fields: Mapping[str, Any]

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)


@dataclass(frozen=True, slots=True)
class PermissionSetAssignment:
    """A Salesforce PermissionSetAssignment. An assignment of a permission set group has the group's
    id in permission_set_group_id (permission_set_id is then the group's aggregate permission set)."""

    id: str
    assignee_id: str
    permission_set_id: str
    permission_set_group_id: str | None = None


@dataclass(frozen=True, slots=True)
class UserLink:
    """The sticky link from an Entra user to the Salesforce user it provisions, and what was last applied.
    `permission_sets`: sorted (target key, assignment id) pairs, the permission set assignments this app
    made (id) or found already made by someone else (id "") for the targets the user's groups grant."""

    entra_id: str
    salesforce_id: str
    applied_hash: str = ""
    pending_email: str | None = None
    last_outcome: str = ""
    last_error_code: str | None = None
    updated_at: str = ""
    permission_sets: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class FailureRecord:
    """A permanent failure, kept so the dead-letter handler knows the original reason and description."""

    message_id: str
    entra_id: str
    action: str
    code: str
    description: str
    occurred_at: str


@dataclass(frozen=True, slots=True)
class GraphSubscription:
    """A Graph change-notification subscription as this app tracks it."""

    id: str
    resource: str
    expires: datetime


@dataclass(frozen=True, slots=True)
class SubscriptionRequest:
    resource: str
    change_type: str
    notification_url: str
    lifecycle_notification_url: str
    client_state: str
