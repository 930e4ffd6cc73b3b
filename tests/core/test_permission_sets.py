import pytest

from shared.core.errors import ConfigurationError
from shared.core.mapping_config import parse_mapping
from shared.core.permission_sets import PermissionTarget, needs_attention, plan_permission_sets

FIELDS = """
[fields.Username]
type = "Expression"
expression = "ToLower([userPrincipalName])"
matching_priority = 1
"""
SALES = "0f6c2b1e-6f5a-4f7e-9d1c-2b8a1e6c9f10"
SUPPORT = "1a2b3c4d-0000-4000-8000-00000000abcd"
OPS = PermissionTarget("PermissionSet", "Sales_Ops")
REPORTS = PermissionTarget("PermissionSet", "Reports_Viewer")
AGENTS = PermissionTarget("PermissionSetGroup", "Support_Agents")


def mapping(section: str):
    return parse_mapping(FIELDS + section, origin="test.toml")


def problems(section: str) -> str:
    with pytest.raises(ConfigurationError) as err:
        mapping(section)
    return str(err.value)


def test_groups_map_to_permission_sets_and_permission_set_groups():
    parsed = mapping(f"""
[[permission_sets.group]]
group_id = "{SALES.upper()}"
name = "Sales EMEA"
permission_sets = ["Sales_Ops", "Reports_Viewer"]

[[permission_sets.group]]
group_id = "{SUPPORT}"
permission_sets = ["Reports_Viewer"]
permission_set_groups = ["Support_Agents"]
""").permission_sets
    assert parsed.group_ids == (SALES, SUPPORT)  # lower-cased, sorted
    assert parsed.targets == {OPS, REPORTS, AGENTS}
    assert parsed.desired([SALES.upper()]) == {OPS, REPORTS}
    assert parsed.desired([SALES, SUPPORT]) == {OPS, REPORTS, AGENTS}
    assert parsed.desired(["99999999-0000-4000-8000-000000000000"]) == frozenset()


def test_no_section_or_an_empty_one_turns_the_feature_off():
    assert not mapping("").permission_sets
    assert not mapping("[permission_sets]\n").permission_sets
    assert mapping("").permission_sets.group_ids == ()


def test_every_problem_is_named_with_its_entry():
    text = problems(f"""
[permission_sets]
extra = 1

[[permission_sets.group]]
group_id = "Sales Team"
permission_sets = ["Sales_Ops"]

[[permission_sets.group]]
group_id = "{SALES}"
permission_sets = ["Sales Ops", "ok_name"]
permission_set_groups = "Support_Agents"
colour = "red"

[[permission_sets.group]]
group_id = "{SUPPORT}"

[[permission_sets.group]]
group_id = "{SALES.upper()}"
permission_sets = ["Reports_Viewer"]
""")
    assert "permission_sets: unknown key 'extra'" in text
    assert "group #1: group_id must be an Entra group object id (a GUID), got 'Sales Team'" in text
    assert "group #2: 'Sales Ops' is not a permission set Name (an API name such as Sales_Ops, not the label)" in text
    assert "group #2: permission_set_groups must be a list of API names" in text
    assert "group #2: unknown key 'colour'" in text
    assert "group #3: grants nothing" in text
    assert f"group #4: group {SALES} is mapped twice" in text


def test_more_groups_than_one_delta_query_can_follow_is_refused():
    entries = "".join(f'[[permission_sets.group]]\ngroup_id = "00000000-0000-4000-8000-{n:012d}"\n'
                      'permission_sets = ["A"]\n' for n in range(51))
    assert "51 groups mapped; at most 50" in problems(entries)


def test_labels_and_namespaced_names_are_not_api_names():
    text = problems(f'[[permission_sets.group]]\ngroup_id = "{SALES}"\npermission_sets = ["ns__Sales_Ops", "1st", "A_"]\n')
    assert "'ns__Sales_Ops', '1st', 'A_' is not a permission set Name" in text


# ---- planning -------------------------------------------------------------------------------------
def test_a_new_member_gets_what_its_groups_grant():
    plan = plan_permission_sets(frozenset({OPS, AGENTS}), {}, {})
    assert plan.add == (OPS, AGENTS)
    assert plan.remove == () and plan.keep == {} and plan.changes


def test_only_assignments_this_app_made_are_removed():
    recorded = {OPS.key: "0Pa000000000001", REPORTS.key: ""}  # ours, and one an admin had made
    current = {OPS.key: "0Pa000000000001", REPORTS.key: "0Pa000000000009"}
    plan = plan_permission_sets(frozenset(), recorded, current)
    assert plan.remove == ((OPS.key, "0Pa000000000001"),)
    assert plan.add == () and plan.keep == {}


def test_a_manual_assignment_is_neither_duplicated_nor_claimed():
    plan = plan_permission_sets(frozenset({OPS}), {}, {OPS.key: "0Pa000000000009"})
    assert plan.add == () and plan.remove == ()
    assert plan.keep == {OPS.key: ""} and plan.manual == (OPS.key,)
    assert not plan.changes


def test_our_assignment_replaced_by_an_admin_becomes_theirs():
    plan = plan_permission_sets(frozenset(), {OPS.key: "0Pa000000000001"}, {OPS.key: "0Pa000000000009"})
    assert plan.remove == () and plan.keep == {}


def test_an_assignment_of_ours_someone_deleted_is_made_again_while_granted():
    plan = plan_permission_sets(frozenset({OPS}), {OPS.key: "0Pa000000000001"}, {})
    assert plan.add == (OPS,) and plan.remove == ()


def test_nothing_to_do_when_the_link_already_holds_what_is_granted():
    recorded = {OPS.key: "0Pa000000000001", AGENTS.key: ""}
    assert not needs_attention(frozenset({OPS, AGENTS}), recorded)
    assert needs_attention(frozenset({OPS}), recorded)
    assert needs_attention(frozenset({OPS, AGENTS, REPORTS}), recorded)
    plan = plan_permission_sets(frozenset({OPS, AGENTS}), recorded, {OPS.key: "0Pa000000000001", AGENTS.key: "0Pa7"})
    assert not plan.changes and plan.keep == recorded


def test_target_keys_round_trip():
    assert PermissionTarget.from_key(AGENTS.key) == AGENTS
    with pytest.raises(ValueError):
        PermissionTarget.from_key("Profile:Admin")
