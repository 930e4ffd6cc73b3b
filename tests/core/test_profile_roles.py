"""Planning the import of Salesforce profiles as app roles: plain values, no I/O."""
from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from shared.core.errors import PermanentError
from shared.core.models import AppRoleDefinition, SalesforceProfile
from shared.core.profile_roles import is_managed, plan_profile_roles

STANDARD = SalesforceProfile("00e5g000000AbCdAAA", "Standard User", "Standard")
CHATTER = SalesforceProfile("00e5g000000AbCeAAA", "Chatter Free User", "CsnOnly")
SALES = SalesforceProfile("00e5g000000AbCfAAA", "Sales User", "Standard")
DEFAULT_ACCESS = AppRoleDefinition("00000000-0000-0000-0000-000000000000", "msiam_access", None, "msiam_access",
                                   ("User",), True)
HAND_MADE = AppRoleDefinition("11111111-1111-1111-1111-111111111111", "Auditors", "Auditor", "made by hand",
                              ("User", "Application"), True)


def ids():
    counter = itertools.count(1)
    return lambda: f"00000000-0000-0000-0000-{next(counter):012d}"


def imported(profile: SalesforceProfile, role_id: str, *, enabled: bool = True) -> AppRoleDefinition:
    return AppRoleDefinition(role_id, profile.name, profile.id, f"Salesforce profile {profile.name}", ("User",), enabled)


def actions(plan) -> dict[str, str]:
    return {change.display_name: change.action for change in plan.changes}


def test_first_import_adds_a_role_per_profile_and_keeps_other_roles_exactly():
    plan = plan_profile_roles([DEFAULT_ACCESS, HAND_MADE], [STANDARD, CHATTER], ids())
    assert actions(plan) == {"msiam_access": "not managed", "Auditors": "not managed",
                             "Chatter Free User": "added", "Standard User": "added"}
    assert plan.roles[:2] == (DEFAULT_ACCESS, HAND_MADE)
    added = plan.roles[2:]
    assert [(r.display_name, r.value, r.allowed_member_types, r.is_enabled) for r in added] == [
        ("Chatter Free User", CHATTER.id, ("User",), True), ("Standard User", STANDARD.id, ("User",), True)]
    assert len({r.id for r in plan.roles}) == 4 and all(is_managed(r) for r in added)
    assert plan.needs_write and plan.disable_first is None


def test_a_repeated_import_changes_nothing():
    current = [DEFAULT_ACCESS, imported(STANDARD, "a"), imported(CHATTER, "b")]
    plan = plan_profile_roles(current, [CHATTER, STANDARD], ids())
    assert not plan.needs_write and plan.roles == tuple(current)
    assert actions(plan)["Standard User"] == "unchanged"


def test_a_role_whose_profile_is_gone_is_disabled_never_removed():
    current = [imported(STANDARD, "a"), imported(SALES, "c")]
    plan = plan_profile_roles(current, [STANDARD], ids())
    assert actions(plan) == {"Standard User": "unchanged", "Sales User": "disabled"}
    assert plan.roles == (current[0], replace(current[1], is_enabled=False))
    assert plan.disable_first is None  # disabling alone is one update
    again = plan_profile_roles(plan.roles, [STANDARD], ids())
    assert not again.needs_write and actions(again)["Sales User"] == "unchanged"


def test_values_match_case_insensitively_so_nothing_is_duplicated():
    current = [replace(imported(STANDARD, "a"), value=STANDARD.id.lower())]
    plan = plan_profile_roles(current, [STANDARD], ids())
    assert not plan.needs_write and len(plan.roles) == 1


def test_a_renamed_profile_renames_its_role_after_disabling_it_first():
    current = [DEFAULT_ACCESS, imported(SALES, "c")]
    renamed = replace(SALES, name="Sales Rep")
    plan = plan_profile_roles(current, [renamed], ids())
    assert actions(plan) == {"msiam_access": "not managed", "Sales Rep": "renamed"}
    assert plan.disable_first == (DEFAULT_ACCESS, replace(current[1], is_enabled=False))
    assert plan.roles == (DEFAULT_ACCESS, replace(current[1], display_name="Sales Rep",
                                                 description="Salesforce profile Sales Rep"))


def test_a_disabled_role_whose_profile_is_back_is_re_enabled_in_one_update():
    plan = plan_profile_roles([imported(SALES, "c", enabled=False)], [SALES], ids())
    assert actions(plan) == {"Sales User": "re-enabled"} and plan.disable_first is None
    assert plan.roles == (imported(SALES, "c"),)


def test_a_profile_whose_name_an_enabled_hand_made_role_has_is_not_added_again():
    hand_made_standard = AppRoleDefinition("22222222-2222-2222-2222-222222222222", "standard user", "StandardUser",
                                           "Standard User", ("User",), True)
    plan = plan_profile_roles([hand_made_standard], [STANDARD, CHATTER], ids())
    assert actions(plan) == {"standard user": "not managed", "Standard User": "name taken", "Chatter Free User": "added"}
    assert [r.display_name for r in plan.roles] == ["standard user", "Chatter Free User"]
    # A disabled hand-made role does not block the import.
    plan = plan_profile_roles([replace(hand_made_standard, is_enabled=False)], [STANDARD], ids())
    assert actions(plan)["Standard User"] == "added"


def test_no_profiles_at_all_is_refused_rather_than_disabling_every_role():
    with pytest.raises(PermanentError, match="no assignable profiles") as caught:
        plan_profile_roles([DEFAULT_ACCESS, imported(STANDARD, "a")], [], ids())
    assert caught.value.code == "NoProfilesToImport"
    assert not plan_profile_roles([DEFAULT_ACCESS], [], ids()).needs_write  # nothing imported yet: nothing to lose


def test_only_18_character_profile_ids_are_managed():
    assert is_managed(imported(STANDARD, "a"))
    for value in (None, "StandardUser", STANDARD.id[:15], "005" + STANDARD.id[3:]):
        assert not is_managed(replace(imported(STANDARD, "a"), value=value))
    with pytest.raises(PermanentError, match="18-character"):
        plan_profile_roles([], [replace(STANDARD, id=STANDARD.id[:15])], ids())
