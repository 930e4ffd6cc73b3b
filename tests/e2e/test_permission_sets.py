"""Permission sets from Entra groups: the Provisioner with the real Graph and Salesforce adapters
against the emulators, groups in the tenant and permission sets in the org. Add and remove, hands off
an admin's assignments, frugal calls, dry run, deactivation."""
from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from cli.operations import CollectingQueue
from emulators.graph import Tenant, run_graph_emulator
from emulators.salesforce import EmulatedOrg, run_salesforce_emulator
from shared.adapters.graph import GraphDirectory, StaticTokenCredential, build_graph_client, close_graph_client
from shared.adapters.salesforce import SalesforceRestOrg
from shared.adapters.salesforce_client import dev_token_client
from shared.adapters.state_sqlite import SqliteStateStore
from shared.core.mapping_config import parse_mapping
from shared.services.audit import audit_fields
from shared.services.provision import Provisioner, ProvisioningConfig

DEFAULT = (Path(__file__).resolve().parents[2] / "config" / "mapping.default.toml").read_text(encoding="utf-8")
SALES_GROUP = "5a1e5000-0000-4000-8000-000000000001"
REPORTS_GROUP = "5a1e5000-0000-4000-8000-000000000002"
UNMAPPED_GROUP = "5a1e5000-0000-4000-8000-000000000003"
MISCONFIGURED_GROUP = "5a1e5000-0000-4000-8000-000000000004"
MAPPING = DEFAULT + f'''
[[permission_sets.group]]
group_id = "{SALES_GROUP}"
name = "Sales"
permission_sets = ["Sales_Ops"]
permission_set_groups = ["Support_Agents"]

[[permission_sets.group]]
group_id = "{REPORTS_GROUP}"
permission_sets = ["Reports_Viewer"]

[[permission_sets.group]]
group_id = "{MISCONFIGURED_GROUP}"
permission_sets = ["Not_In_The_Org"]
'''


class World:
    """A tenant with the Salesforce app, an org with permission sets, and a provisioner between them."""

    def __init__(self, tenant: Tenant, graph: Any, org: EmulatedOrg, provisioner: Provisioner, state: SqliteStateStore,
                 sp: str, role: str) -> None:
        self.tenant, self.graph, self.org, self.provisioner, self.state = tenant, graph, org, provisioner, state
        self.sp, self.role = sp, role
        self.sets = {name: org.add_permission_set(name) for name in ("Sales_Ops", "Reports_Viewer", "Unmapped_Set")}
        self.agents = org.add_permission_set_group("Support_Agents")
        for group_id, name in ((SALES_GROUP, "Sales"), (REPORTS_GROUP, "Reports"), (UNMAPPED_GROUP, "Other"),
                               (MISCONFIGURED_GROUP, "Misconfigured")):
            tenant.add_group(name, id=group_id)

    def hire(self, name: str, *groups: str) -> str:
        user_id = self.tenant.add_user(userPrincipalName=f"{name}@contoso.com", displayName=name, mail=f"{name}@contoso.com",
                                       givenName=name.title(), surname="Tester")
        self.tenant.assign(self.sp, user_id, self.role)
        for group in groups:
            self.tenant.add_member(group, user_id)
        return user_id

    def salesforce_id(self, entra_id: str) -> str:
        link = self.state.get_link(entra_id)
        assert link is not None
        return link.salesforce_id

    def held(self, entra_id: str) -> set[str]:
        """The user's explicit assignments, as target names."""
        names = {v: k for k, v in self.sets.items()} | {self.agents: "Support_Agents"}
        return {names[a["PermissionSetGroupId"] or a["PermissionSetId"]]
                for a in self.org.permission_set_assignments(self.salesforce_id(entra_id))}


@pytest.fixture
async def world() -> AsyncIterator[World]:
    tenant = Tenant(seed=11)
    sp = tenant.add_service_principal("Salesforce")
    role = tenant.add_app_role(sp, "Standard User", value="StandardUser")
    org = EmulatedOrg()
    with run_graph_emulator(tenant) as graph, run_salesforce_emulator(org) as salesforce:
        client = build_graph_client(graph.base_url, StaticTokenCredential(graph.token))
        sf = SalesforceRestOrg(partial(dev_token_client, salesforce.instance_url, salesforce.token, salesforce.ca_path))
        with SqliteStateStore(":memory:") as state:
            provisioner = Provisioner(GraphDirectory(client), sf, state, CollectingQueue(),
                                      ProvisioningConfig(sp, parse_mapping(MAPPING), batch_wait_seconds=0))
            yield World(tenant, graph, org, provisioner, state, sp, role)
        await close_graph_client(client)


def calls(org: EmulatedOrg) -> dict[str, int]:
    return dict(org.calls.snapshot()["by_kind"])


async def test_group_members_get_permission_sets_and_groups_in_one_create_call(world: World, caplog):
    caplog.set_level(logging.INFO, logger="shared.services.audit")
    ann, bob, cid = (world.hire("ann", SALES_GROUP), world.hire("bob", SALES_GROUP, REPORTS_GROUP),
                     world.hire("cid", UNMAPPED_GROUP))

    results = {r.entra_id: r for r in await world.provisioner.reconcile([ann, bob, cid])}

    assert world.held(ann) == {"Sales_Ops", "Support_Agents"}
    assert world.held(bob) == {"Sales_Ops", "Support_Agents", "Reports_Viewer"}
    assert world.held(cid) == set()
    assert results[bob].permission_sets.added == ("PermissionSet:Reports_Viewer", "PermissionSet:Sales_Ops",
                                                  "PermissionSetGroup:Support_Agents")
    assert results[cid].permission_sets is None
    # users: a match query, the profiles, one create; permission sets: two name lookups and one create
    # (users created just now hold no assignments: nothing to query)
    assert calls(world.org) == {"query": 4, "composite_create": 2}
    assert dict(world.state.get_link(ann).permission_sets).keys() == {"PermissionSet:Sales_Ops",
                                                                      "PermissionSetGroup:Support_Agents"}
    logged = {r["entra_id"]: r for r in map(audit_fields, caplog.records) if r}
    assert logged[bob]["action"] == "create" and logged[bob]["permission_sets_added"].count(",") == 2


async def test_an_unchanged_user_costs_no_permission_set_call_and_a_change_costs_three(world: World):
    ann = world.hire("ann", SALES_GROUP)
    await world.provisioner.reconcile([ann])
    world.org.calls.reset()

    [again] = await world.provisioner.reconcile([ann])
    assert calls(world.org) == {"query": 1}  # matching the user (Id IN … OR Username IN …); nothing more
    assert again.status == "skipped" and again.permission_sets is None

    world.tenant.remove_member(SALES_GROUP, ann)
    world.tenant.add_member(REPORTS_GROUP, ann)
    world.org.calls.reset()
    [moved] = await world.provisioner.reconcile([ann])

    assert world.held(ann) == {"Reports_Viewer"}
    assert moved.status == "success" and moved.operation.action == "noop"
    assert moved.permission_sets.added == ("PermissionSet:Reports_Viewer",)
    assert set(moved.permission_sets.removed) == {"PermissionSet:Sales_Ops", "PermissionSetGroup:Support_Agents"}
    # every mapped target was resolved at the first change and cached: one assignment query, one create,
    # one delete (plus matching the user: one query)
    assert calls(world.org) == {"query": 2, "composite_create": 1, "composite_delete": 1}


async def test_assignments_an_admin_made_are_never_removed_or_duplicated(world: World):
    ann = world.hire("ann", SALES_GROUP)
    await world.provisioner.reconcile([ann])
    sf_id = world.salesforce_id(ann)
    # by hand: a mapped set the user's groups do not grant, one they will grant, and an unmapped one
    for name in ("Reports_Viewer", "Unmapped_Set"):
        world.org.assign_permission_set({"AssigneeId": sf_id, "PermissionSetId": world.sets[name]})

    world.tenant.add_member(REPORTS_GROUP, ann)  # now granted, and already held: not created again
    [joined] = await world.provisioner.reconcile([ann])
    assert joined.permission_sets.added == () and joined.permission_sets.manual == ("PermissionSet:Reports_Viewer",)
    assert len(world.org.permission_set_assignments(sf_id)) == 4

    world.tenant.remove_member(REPORTS_GROUP, ann)
    world.tenant.remove_member(SALES_GROUP, ann)
    [left] = await world.provisioner.reconcile([ann])

    assert set(left.permission_sets.removed) == {"PermissionSet:Sales_Ops", "PermissionSetGroup:Support_Agents"}
    assert world.held(ann) == {"Reports_Viewer", "Unmapped_Set"}  # the admin's stay
    assert world.state.get_link(ann).permission_sets == ()


async def test_nested_group_members_are_granted_too(world: World):
    team = world.tenant.add_group("Sales Contractors")
    world.tenant.add_member(SALES_GROUP, team)
    dee = world.hire("dee", team)

    await world.provisioner.reconcile([dee])

    assert world.held(dee) == {"Sales_Ops", "Support_Agents"}


async def test_deactivated_users_keep_their_assignments_and_get_them_back_unchanged(world: World):
    ann = world.hire("ann", SALES_GROUP)
    await world.provisioner.reconcile([ann])
    [assignment] = [a for a in world.tenant.assignments_of(ann)]
    world.tenant.unassign(assignment.id)

    [gone] = await world.provisioner.reconcile([ann])
    assert gone.operation.action == "deactivate"
    assert world.held(ann) == {"Sales_Ops", "Support_Agents"}  # as Salesforce keeps them on inactive users

    world.tenant.assign(world.sp, ann, world.role)
    world.org.calls.reset()
    [back] = await world.provisioner.reconcile([ann])
    assert back.operation.action == "reactivate" and back.permission_sets is None
    assert "composite_create" not in calls(world.org)


async def test_dry_run_plans_the_changes_and_writes_nothing(world: World):
    ann = world.hire("ann", SALES_GROUP)
    [planned_new] = await world.provisioner.reconcile([ann], apply=False)
    assert planned_new.operation.action == "create"
    assert planned_new.permission_sets.added == ("PermissionSet:Sales_Ops", "PermissionSetGroup:Support_Agents")

    await world.provisioner.reconcile([ann])
    world.tenant.remove_member(SALES_GROUP, ann)
    world.tenant.add_member(REPORTS_GROUP, ann)
    world.org.calls.reset()
    [planned] = await world.provisioner.reconcile([ann], apply=False)

    assert planned.permission_sets.added == ("PermissionSet:Reports_Viewer",)
    assert set(planned.permission_sets.removed) == {"PermissionSet:Sales_Ops", "PermissionSetGroup:Support_Agents"}
    assert world.held(ann) == {"Sales_Ops", "Support_Agents"}
    assert world.org.calls.snapshot()["writes"] == 0


async def test_a_permission_set_missing_in_salesforce_fails_only_the_users_it_is_granted_to(world: World):
    ann, bob = world.hire("ann", SALES_GROUP, MISCONFIGURED_GROUP), world.hire("bob", SALES_GROUP)

    results = {r.entra_id: r for r in await world.provisioner.reconcile([ann, bob])}

    assert results[ann].error.code == "PermissionSetNotFound"
    assert "PermissionSet:Not_In_The_Org" in results[ann].error.message
    assert world.held(ann) == set()  # created, but nothing assigned until the mapping or the org is fixed
    assert results[bob].error is None and world.held(bob) == {"Sales_Ops", "Support_Agents"}


async def test_membership_changes_of_mapped_and_nested_groups_are_detected(world: World):
    from shared.services.detect_changes import ChangeDetector, DetectConfig

    queue = CollectingQueue()
    mapping = parse_mapping(MAPPING)
    detector = ChangeDetector(world.provisioner._directory, queue, world.state,  # the provisioner's Graph adapter
                              DetectConfig(world.sp, mapping.source_attributes, mapping.permission_sets.group_ids))
    team = world.tenant.add_group("Sales Contractors")
    world.tenant.add_member(SALES_GROUP, team)
    ann, bob, dee = world.hire("ann", SALES_GROUP), world.hire("bob"), world.hire("dee")
    outsider = world.tenant.add_user(userPrincipalName="zed@contoso.com", displayName="zed")  # no Salesforce role

    async def cycle() -> dict[str, str]:
        queue.messages.clear()
        await detector.run_cycle()
        return {m.entra_id: m.reason for m in queue.messages}

    assert set(await cycle()) == {ann, bob, dee}  # the first sync
    assert await cycle() == {}

    world.tenant.add_member(SALES_GROUP, bob)
    world.tenant.add_member(SALES_GROUP, outsider)
    world.tenant.add_member(team, dee)  # inside a nested group
    assert await cycle() == {bob: "membership", dee: "membership"}

    world.tenant.remove_member(SALES_GROUP, ann)
    assert await cycle() == {ann: "membership"}

    temps = world.tenant.add_group("Temps")
    world.tenant.add_member(temps, ann)
    world.tenant.add_member(SALES_GROUP, temps)  # a newly nested group brings its members
    # the set of nested groups changed, so they are listed afresh: dee (in the other nested group) again
    assert await cycle() == {ann: "membership", dee: "membership"}
    world.tenant.remove_member(SALES_GROUP, temps)  # and takes them away again
    assert await cycle() == {ann: "membership"}  # (the earlier set's cursor is resumed)

    world.graph.calls.clear()
    assert await cycle() == {}
    # per quiet cycle: one transitive listing per mapped group and one delta query per chunk of groups
    assert world.graph.calls["groups.transitiveMembers"] == 3 and world.graph.calls["groups.delta"] == 2


async def test_plan_output_and_provisioning_log_show_permission_set_changes(world: World, capsys, monkeypatch):
    import json

    from cli.__main__ import _results_table
    from cli.provisioning_log import ProvisioningLog

    ann, bob = world.hire("ann", SALES_GROUP), world.hire("bob")
    with ProvisioningLog() as plog:
        await world.provisioner.reconcile([ann, bob])
    summary = plog.summary().permission_set_assignments
    assert (summary["added"], summary["removed"]) == (2, 0)

    world.tenant.add_member(REPORTS_GROUP, bob)
    results = await world.provisioner.reconcile([ann, bob], apply=False)
    _results_table(results, "Planned changes", as_json=True)
    [planned] = json.loads(capsys.readouterr().out)  # ann is in line; bob's only change is a permission set
    assert planned == {"entraId": bob, "action": "noop", "salesforceId": world.salesforce_id(bob), "changes": {},
                       "permissionSets": {"add": ["PermissionSet:Reports_Viewer"], "remove": []}, "error": None}
    monkeypatch.setenv("COLUMNS", "300")  # a table row on one line
    _results_table(results, "Planned changes", as_json=False)
    assert "+PermissionSet:Reports_Viewer" in capsys.readouterr().out


async def test_provision_on_demand_reports_the_permission_set_changes(world: World):
    from shared.services.on_demand import OnDemandProvisioner

    ann = world.hire("ann", SALES_GROUP)
    on_demand = OnDemandProvisioner(world.provisioner._directory, world.provisioner._org, world.provisioner, world.sp)

    created = (await on_demand.provision(ann)).step("action")
    assert created.status == "success" and created.data["permissionSetsAdded"] == [
        "PermissionSet:Sales_Ops", "PermissionSetGroup:Support_Agents"]
    assert created.detail.endswith("; permission sets +PermissionSet:Sales_Ops, PermissionSetGroup:Support_Agents")

    world.tenant.remove_member(SALES_GROUP, ann)
    removed = (await on_demand.provision(ann)).step("action")
    assert removed.status == "success" and removed.detail.startswith("noop: in sync; permission sets -")
    assert (await on_demand.provision(ann)).step("action").status == "skipped"


async def test_check_names_mapped_permission_sets_salesforce_lacks(world: World, tmp_path):
    from types import SimpleNamespace

    from cli.operations import check

    path = tmp_path / "mapping.toml"
    path.write_text(MAPPING, encoding="utf-8")
    container = SimpleNamespace(settings=SimpleNamespace(MAPPING_FILE=str(path), SALESFORCE_SERVICE_PRINCIPAL_ID=world.sp),
                                directory=world.provisioner._directory, org=world.provisioner._org)

    *_, step = await check(container)

    assert not step.ok and step.detail == "3 of 4 found; missing: PermissionSet:Not_In_The_Org"


def test_a_missing_permission_set_has_its_own_advice_in_the_failure_email():
    from shared.core.guidance import guidance_for

    advice = guidance_for("PermissionSetNotFound")
    assert advice.connector_code == "SalesforcePermissionSetNotFound" and "mapping file" in advice.advice


async def test_a_set_the_org_assigns_on_create_is_taken_as_theirs_not_duplicated(world: World):
    world.org.assigned_on_create.append(world.sets["Sales_Ops"])  # e.g. a Flow on new users
    ann = world.hire("ann", SALES_GROUP)

    [created] = await world.provisioner.reconcile([ann])  # a new user is not queried: the create meets it

    assert created.error is None and created.permission_sets.added == ("PermissionSetGroup:Support_Agents",)
    assert created.permission_sets.manual == ("PermissionSet:Sales_Ops",)
    assert dict(world.state.get_link(ann).permission_sets)["PermissionSet:Sales_Ops"] == ""
    world.tenant.remove_member(SALES_GROUP, ann)
    await world.provisioner.reconcile([ann])
    assert world.held(ann) == {"Sales_Ops"}  # the Flow's assignment stays
