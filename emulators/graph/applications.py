"""Reading the appRoles of an application PATCH body the way Graph validates them (approle.md): an id
that is a GUID, allowedMemberTypes of User and/or Application, a displayName, isEnabled, and a value
of at most 120 characters from a restricted set (no spaces, not starting with a dot). `origin` is
read-only and ignored. The tenant then applies Graph's rules across roles (Tenant.replace_app_roles)."""
from __future__ import annotations

import re
import uuid
from typing import Any

from .tenant import AppRoleRecord

MAX_VALUE_CHARS = 120
_VALUE = re.compile(r"^[0-9A-Za-z:!#$%&'()*+,\-./;<=>?@\[\]^_`{|}~]+$")
_MEMBER_TYPES = frozenset({"User", "Application"})


def parse_app_roles(body: Any) -> list[AppRoleRecord]:
    """The appRoles of a PATCH body; raises ValueError naming the first problem."""
    if not isinstance(body, dict) or {k for k in body if not k.startswith("@odata.")} != {"appRoles"}:
        raise ValueError("The emulator updates only appRoles of an application; send {\"appRoles\": [...]}.")
    roles = body["appRoles"]
    if not isinstance(roles, list):
        raise ValueError("appRoles must be a collection.")
    return [_role(item, index) for index, item in enumerate(roles)]


def _role(item: Any, index: int) -> AppRoleRecord:
    where = f"appRoles[{index}]"
    if not isinstance(item, dict):
        raise ValueError(f"{where} must be an object.")
    try:
        role_id = str(uuid.UUID(str(item.get("id"))))
    except ValueError:
        raise ValueError(f"{where}.id must be a GUID.") from None
    members = item.get("allowedMemberTypes")
    if not isinstance(members, list) or not members or not set(members) <= _MEMBER_TYPES:
        raise ValueError(f"{where}.allowedMemberTypes must hold 'User' and/or 'Application'.")
    display_name = item.get("displayName")
    if not isinstance(display_name, str) or not display_name.strip():
        raise ValueError(f"{where}.displayName is required.")
    if not isinstance(item.get("isEnabled"), bool):
        raise ValueError(f"{where}.isEnabled must be true or false.")
    value = item.get("value")
    if value is not None and (not isinstance(value, str) or len(value) > MAX_VALUE_CHARS or not _VALUE.match(value)
                              or value.startswith(".")):
        raise ValueError(f"{where}.value must be at most {MAX_VALUE_CHARS} characters without spaces, from the "
                         "allowed set, and not start with '.'.")
    description = item.get("description")
    return AppRoleRecord(role_id, display_name, value, item["isEnabled"], description if isinstance(description, str) else None,
                         tuple(members))
