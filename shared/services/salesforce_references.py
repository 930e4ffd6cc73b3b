"""Profile and role names that a mapping produces → the ids Salesforce wants (ProfileId, UserRoleId),
for one batch of users. Each list is read at most once per batch from the adapter's cache, and read
again once when a name is missing, so a profile or role created in the org since the cache was
filled (e.g. one just imported as an app role) is found rather than failing the user."""
from __future__ import annotations

from typing import Mapping, Sequence

from ..core.errors import PermanentError
from ..core.mapping import user_role_id
from ..core.models import SalesforceRole
from ..core.ports import SalesforceOrg


class SalesforceReferences:
    def __init__(self, org: SalesforceOrg) -> None:
        self._org = org
        self._profiles: Mapping[str, str] | None = None
        self._roles: Sequence[SalesforceRole] | None = None
        self._refreshed: set[str] = set()

    async def profile_id(self, name: str) -> str:
        if self._profiles is None:
            self._profiles = await self._org.profile_ids()
        if name not in self._profiles and "profiles" not in self._refreshed:
            self._refreshed.add("profiles")
            self._profiles = await self._org.profile_ids(refresh=True)
        if name not in self._profiles:
            raise PermanentError("ProfileNotFound", f"no Salesforce profile named {name!r}", system="mapping")
        return self._profiles[name]

    async def user_role_id(self, name: str) -> str:
        if self._roles is None:
            self._roles = await self._org.user_roles()
        try:
            return user_role_id(name, self._roles)
        except PermanentError as exc:
            if exc.code != "UserRoleNotFound" or "roles" in self._refreshed:
                raise
        self._refreshed.add("roles")
        self._roles = await self._org.user_roles(refresh=True)
        return user_role_id(name, self._roles)
