"""SalesforceRestOrg's permission-set calls: real simple-salesforce over TLS against the emulator."""
from __future__ import annotations

from shared.adapters.salesforce import SalesforceRestOrg
from shared.core.errors import PermanentError
from shared.core.models import PermissionSetAssignment
from shared.core.permission_sets import PermissionTarget

from .salesforce_records import assert_counts_match, record

OPS = PermissionTarget("PermissionSet", "Sales_Ops")
AGENTS = PermissionTarget("PermissionSetGroup", "Support_Agents")


async def test_names_resolve_to_ids_once_and_missing_ones_are_absent(adapter: SalesforceRestOrg, org) -> None:
    ops = org.add_permission_set("Sales_Ops", "Sales Operations")
    agents = org.add_permission_set_group("Support_Agents")
    missing = PermissionTarget("PermissionSet", "Not_There")
    # a profile's own permission set is never a mapping target, even when named like one
    profile_set = org.permissions.profile_permission_set(org.profile_id("Standard User"))
    owned = PermissionTarget("PermissionSet", next(r["Name"] for r in org.permissions.permission_set_rows()
                                                   if r["Id"] == profile_set))

    found = await adapter.permission_target_ids([OPS, AGENTS, missing, owned])
    assert found == {OPS: ops, AGENTS: agents}
    assert org.calls.by_kind["query"] == 2
    assert await adapter.permission_target_ids([OPS, AGENTS, missing]) == {OPS: ops, AGENTS: agents}
    assert org.calls.by_kind["query"] == 2  # cached, the missing name too
    assert_counts_match(adapter, org)


async def test_assign_query_and_delete_in_collection_calls(adapter: SalesforceRestOrg, org) -> None:
    ops = org.add_permission_set("Sales_Ops")
    agents = org.add_permission_set_group("Support_Agents")
    ann = org.create_user(record(org, "ann@contoso.com"))
    bob = org.create_user(record(org, "bob@contoso.com"))

    created = await adapter.create_permission_set_assignments([
        {"AssigneeId": ann, "PermissionSetId": ops},
        {"AssigneeId": bob, "PermissionSetGroupId": agents},
        {"AssigneeId": ann, "PermissionSetId": ops},  # the same again
    ])
    assert created[0].error is None and created[1].error is None
    assert created[2].error is not None and created[2].error.code == "DUPLICATE_VALUE"
    assert org.calls.by_kind["composite_create"] == 1

    found = await adapter.permission_set_assignments([ann, bob], [ops], [agents])
    by_assignee = {a.assignee_id: a for a in found}
    assert by_assignee[ann] == PermissionSetAssignment(created[0].salesforce_id, ann, ops, None)
    group_assignment = by_assignee[bob]
    assert group_assignment.permission_set_group_id == agents
    assert group_assignment.permission_set_id != ops  # the group's aggregate permission set
    assert len(found) == 2  # the profiles' own assignments are not asked for

    deleted = await adapter.delete_permission_set_assignments([created[0].salesforce_id, created[0].salesforce_id])
    assert deleted[0].error is None
    assert deleted[1].error is not None and deleted[1].error.code == "ENTITY_IS_DELETED"
    assert org.permission_set_assignments(ann) == []
    assert org.calls.by_kind["composite_delete"] == 1
    assert_counts_match(adapter, org)


async def test_nothing_to_ask_costs_no_call(adapter: SalesforceRestOrg, org) -> None:
    assert await adapter.permission_set_assignments([], ["0PS5AB000000001AAA"], []) == []
    assert await adapter.permission_set_assignments(["0055AB000000001AAA"], [], []) == []
    assert org.calls.total == 0


async def test_a_long_batch_is_split_to_fit_the_url(adapter: SalesforceRestOrg, org) -> None:
    ops = org.add_permission_set("Sales_Ops")
    users = [org.create_user(record(org, f"user{n}@contoso.com")) for n in range(3)]
    org.assign_permission_set({"AssigneeId": users[2], "PermissionSetId": ops})
    fake_ids = [f"0055AB{n:09d}AAA" for n in range(1000)]  # 1,000 assignees do not fit one URL

    found = await adapter.permission_set_assignments(users + fake_ids, [ops], [])

    assert [a.assignee_id for a in found] == [users[2]]
    assert org.calls.by_kind["query"] > 1


async def test_bad_ids_are_refused_before_any_call(adapter: SalesforceRestOrg, org) -> None:
    for call in (adapter.permission_set_assignments(["005' OR Id != '"], ["0PS5AB000000001AAA"], []),
                 adapter.delete_permission_set_assignments(["not an id"])):
        try:
            await call
        except PermanentError as exc:
            assert exc.code == "MALFORMED_ID"
        else:
            raise AssertionError("a malformed id was sent")
    assert org.calls.total == 0
