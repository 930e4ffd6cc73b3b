"""Profile and role names → ids for a batch: one read each, one refresh for a name the cache does not
know (a profile or role created since), then a clear error."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import pytest

from shared.core.errors import PermanentError
from shared.core.models import SalesforceRole
from shared.services.salesforce_references import SalesforceReferences


class FakeOrg:
    """The two SalesforceOrg reads, over an org whose contents the test changes; `reads` records them."""

    def __init__(self) -> None:
        self.profiles = {"Standard User": "00e000000000001AAA"}
        self.roles = [SalesforceRole("00E000000000001AAA", "Sales", "Sales")]
        self.cached: dict[str, Any] = {}
        self.reads: list[tuple[str, bool]] = []

    async def profile_ids(self, *, refresh: bool = False) -> Mapping[str, str]:
        self.reads.append(("profiles", refresh))
        if refresh or "profiles" not in self.cached:
            self.cached["profiles"] = dict(self.profiles)
        return self.cached["profiles"]

    async def user_roles(self, *, refresh: bool = False) -> Sequence[SalesforceRole]:
        self.reads.append(("roles", refresh))
        if refresh or "roles" not in self.cached:
            self.cached["roles"] = list(self.roles)
        return self.cached["roles"]


async def test_names_created_since_the_cache_was_filled_are_found_with_one_refresh():
    org = FakeOrg()
    await SalesforceReferences(org).profile_id("Standard User")  # an earlier batch fills the cache
    org.profiles["Field Sales"] = "00e000000000002AAA"
    org.roles.append(SalesforceRole("00E000000000002AAA", "Field Team", "FieldTeam"))
    org.reads.clear()

    references = SalesforceReferences(org)
    assert await references.profile_id("Standard User") == "00e000000000001AAA"
    assert await references.profile_id("Field Sales") == "00e000000000002AAA"
    assert await references.profile_id("Field Sales") == "00e000000000002AAA"
    assert await references.user_role_id("FieldTeam") == "00E000000000002AAA"
    assert org.reads == [("profiles", False), ("profiles", True), ("roles", False)]


async def test_an_unknown_name_costs_one_refresh_per_batch_then_fails_clearly():
    org = FakeOrg()
    references = SalesforceReferences(org)
    for _ in range(3):
        with pytest.raises(PermanentError) as profile:
            await references.profile_id("Nobody")
        with pytest.raises(PermanentError) as role:
            await references.user_role_id("Nowhere")
    assert (profile.value.code, role.value.code) == ("ProfileNotFound", "UserRoleNotFound")
    assert org.reads == [("profiles", False), ("profiles", True), ("roles", False), ("roles", True)]
