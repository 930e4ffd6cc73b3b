"""GraphDirectory.user_states: the per-user reads packed into Graph $batch calls, through the real
msgraph-sdk over HTTP against the Graph emulator."""
from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from emulators.graph import Tenant, run_graph_emulator
from emulators.graph.demo_tenant import DemoTenant, seed_demo_tenant
from emulators.graph.server import GraphEmulator
from shared.adapters.graph import (
    GraphDirectory,
    GraphRetryPolicy,
    StaticTokenCredential,
    build_graph_client,
    close_graph_client,
)
from shared.core.errors import PermanentError, TransientError
from shared.core.mapping import MappingInput
from shared.core.mapping_config import parse_mapping
from shared.core.models import EntraUserState

SELECT = ["displayName", "userPrincipalName", "mail", "accountEnabled", "givenName", "surname",
          "preferredLanguage", "department"]
NO_WAIT = GraphRetryPolicy(max_retries=2, backoff_seconds=0.0)
MISSING = "00000000-0000-4000-8000-000000000000"


@pytest.fixture(scope="module")
def demo() -> Iterator[tuple[GraphEmulator, DemoTenant]]:
    tenant = Tenant(seed=21)
    described = seed_demo_tenant(tenant, users=200)
    with run_graph_emulator(tenant) as emulator:
        yield emulator, described


@pytest.fixture
def graph(demo) -> GraphEmulator:
    emulator, _ = demo
    emulator.faults.clear()
    emulator.calls.clear()
    return emulator


@pytest.fixture
async def directory(graph: GraphEmulator) -> AsyncIterator[GraphDirectory]:
    client = build_graph_client(graph.base_url, StaticTokenCredential(graph.token), retry=NO_WAIT)
    yield GraphDirectory(client, batch_retry=NO_WAIT)
    await close_graph_client(client)


async def test_every_demo_user_reads_as_user_state_reads_it(graph, demo, directory):
    _, tenant = demo
    ids = list(tenant.user_ids)

    batched = await directory.user_states(ids, SELECT, tenant.service_principal_id)
    one_by_one = {user_id: await directory.user_state(user_id, SELECT, tenant.service_principal_id)
                  for user_id in ids}

    assert batched == one_by_one
    assert any(state.user is None for state in one_by_one.values())  # the hard-deleted users
    assert {user_id for user_id, state in batched.items() if state.app_role_ids} == set(tenant.expected_roles)
    assert graph.calls["batch"] == (len(ids) + 9) // 10


async def test_100_users_take_10_batch_calls_and_no_single_reads(graph, demo, directory):
    _, tenant = demo

    states = await directory.user_states(tenant.user_ids[:100], SELECT, tenant.service_principal_id)

    assert len(states) == 100 and all(isinstance(state, EntraUserState) for state in states.values())
    assert graph.calls["batch"] == 10 and directory.calls == {"batch": 10}
    assert graph.calls["users.get"] == 100 and graph.calls["users.appRoleAssignments"] == 100


async def test_ids_are_read_once_whatever_their_case(graph, demo, directory):
    _, tenant = demo
    first = tenant.user_ids[0]

    states = await directory.user_states([first.upper(), first, tenant.user_ids[1]], SELECT,
                                         tenant.service_principal_id)

    assert list(states) == [first, tenant.user_ids[1]] and graph.calls["users.get"] == 2


async def test_an_unknown_user_reads_as_gone(graph, demo, directory):
    _, tenant = demo

    states = await directory.user_states([MISSING, tenant.user_ids[0]], SELECT, tenant.service_principal_id)

    assert states[MISSING] == EntraUserState(MISSING, None)
    assert states[tenant.user_ids[0]].user is not None


async def test_throttled_items_are_sent_again_in_a_later_batch(graph, demo, directory):
    _, tenant = demo
    ids = list(tenant.user_ids[:10])
    expected = await directory.user_states(ids, SELECT, tenant.service_principal_id)
    graph.calls.clear()
    graph.faults.add("users.appRoleAssignments", 429, times=3, retry_after=0)
    graph.faults.add("users.get", 503, times=1)

    states = await directory.user_states(ids, SELECT, tenant.service_principal_id)

    assert states == expected
    assert graph.calls["batch"] == 2  # the four throttled items went together in one more batch
    assert graph.calls["users.appRoleAssignments"] == 13 and graph.calls["users.get"] == 11


async def test_an_item_throttled_past_its_retries_becomes_a_transient_error(graph, demo, directory):
    _, tenant = demo
    first, second = tenant.user_ids[:2]
    graph.faults.add(f"/v1.0/users/{first}", 429, retry_after=0)

    states = await directory.user_states([first, second], SELECT, tenant.service_principal_id)

    error = states[first]
    assert isinstance(error, TransientError) and error.code == "TooManyRequests" and error.retry_after == 0
    assert isinstance(states[second], EntraUserState)
    assert graph.calls["batch"] == 1 + NO_WAIT.max_retries


async def test_a_long_retry_after_is_not_waited_for(graph, demo, directory):
    _, tenant = demo
    graph.faults.add("users.get", 429, times=1, retry_after=600)

    states = await directory.user_states(tenant.user_ids[:1], SELECT, tenant.service_principal_id)

    error = states[tenant.user_ids[0]]
    assert isinstance(error, TransientError) and error.retry_after == 600
    assert graph.calls["batch"] == 1


async def test_a_failed_item_fails_only_its_user(graph, demo, directory):
    _, tenant = demo
    first, second = tenant.user_ids[:2]
    graph.faults.add(f"/v1.0/users/{first}/appRoleAssignments", 403)

    states = await directory.user_states([first, second], SELECT, tenant.service_principal_id)

    assert isinstance(states[first], PermanentError) and states[first].code == "HTTP403"
    assert isinstance(states[second], EntraUserState)


async def test_a_failed_batch_call_fails_each_of_its_users(graph, demo, directory):
    _, tenant = demo
    graph.faults.add("batch", 400)

    states = await directory.user_states(tenant.user_ids[:12], SELECT, tenant.service_principal_id)

    assert len(states) == 12 and all(isinstance(state, PermanentError) for state in states.values())
    assert graph.calls["batch"] == 2 and graph.calls["users.get"] == 0


async def test_paged_role_assignments_are_followed_outside_the_batch(graph, demo):
    _, tenant = demo
    two_roles = sorted(tenant.two_role_ids)[:3]
    client = build_graph_client(graph.base_url, StaticTokenCredential(graph.token), retry=NO_WAIT)
    try:
        paged = GraphDirectory(client, page_size=1, batch_retry=NO_WAIT)
        states = await paged.user_states(two_roles, SELECT, tenant.service_principal_id)
    finally:
        await close_graph_client(client)

    assert {user_id: state.app_role_ids for user_id, state in states.items()} == {
        user_id: tenant.expected_roles[user_id] for user_id in two_roles}
    assert paged.calls["batch"] == 1 and paged.calls["user_app_role_assignments"] >= len(two_roles)


async def test_no_users_make_no_calls(graph, demo, directory):
    _, tenant = demo

    assert await directory.user_states([], SELECT, tenant.service_principal_id) == {}
    assert graph.calls["batch"] == 0


async def test_group_membership_of_the_mapped_groups_is_read_in_the_same_batches(graph, demo, directory):
    emulator, tenant = demo
    groups = tenant.group_ids
    nested, parent = groups["Sales Contractors"], groups["Sales Team"]  # the nested group is in Sales Team
    asked = [parent, groups["Support Team"], MISSING] + [f"00000000-0000-4000-8000-{n:012d}" for n in range(1, 20)]
    nested_member = next(iter(tenant.nested_only_ids))
    ids = [nested_member, *tenant.user_ids[:9]]

    states = await directory.user_states(ids, SELECT, tenant.service_principal_id, group_ids=[g.upper() for g in asked])

    assert parent in states[nested_member].member_of  # through the nested group
    for user_id in ids:
        state = states[user_id]
        if state.user is not None:
            expected = emulator.tenant.transitive_group_ids(user_id) & {parent, groups["Support Team"]}
            assert state.member_of == expected, user_id
    # 22 groups: two checkMemberGroups items per user, so five users (20 items) per batch
    assert graph.calls["batch"] == 2 and graph.calls["users.checkMemberGroups"] == 2 * sum(
        1 for user_id in ids if emulator.tenant.find_user(user_id) is not None)
    assert nested in emulator.tenant.transitive_group_ids(nested_member)


async def test_without_mapped_groups_membership_is_not_read(graph, demo, directory):
    _, tenant = demo
    states = await directory.user_states(tenant.user_ids[:10], SELECT, tenant.service_principal_id)
    assert graph.calls["users.checkMemberGroups"] == 0
    assert all(state.member_of == frozenset() for state in states.values())


async def test_a_refused_membership_check_fails_that_user_only(graph, demo, directory):
    _, tenant = demo
    live = [u for u in tenant.user_ids if graph.tenant.find_user(u) is not None][:2]
    graph.faults.add("users.checkMemberGroups", 403, times=1)

    states = await directory.user_states(live, SELECT, tenant.service_principal_id, group_ids=[MISSING])

    failed = [s for s in states.values() if isinstance(s, PermanentError)]
    assert len(failed) == 1 and failed[0].code != ""
    assert sum(isinstance(s, EntraUserState) for s in states.values()) == 1


async def test_paths_into_complex_properties_select_the_property_and_read_its_parts(graph, demo, directory):
    emulator, tenant = demo
    mapping = parse_mapping(
        '[fields.Username]\ntype = "Direct"\nsource = "userPrincipalName"\nmatching_priority = 1\n'
        '[fields.Division]\ntype = "Direct"\nsource = "employeeOrgData.division"\n'
        '[fields.Department]\ntype = "Expression"\nexpression = "[onPremisesExtensionAttributes.extensionAttribute1]"\n'
        '[[scoping.filter]]\nclause = [{ attribute = "employeeOrgData.costCenter", operator = "EQUALS", value = "CC-42" }]\n')
    user_id = emulator.tenant.add_user(
        userPrincipalName="org.data@contoso.com", displayName="Org Data",
        employeeOrgData={"division": "EMEA", "costCenter": "CC-42"},
        onPremisesExtensionAttributes={"extensionAttribute1": "Field Sales", "extensionAttribute2": None})

    states = await directory.user_states([user_id], mapping.source_attributes, tenant.service_principal_id)

    user = states[user_id].user
    assert user is not None and mapping.scoping.in_scope(user)
    assert mapping.apply(MappingInput(user, ())) == {
        "Username": "org.data@contoso.com", "Division": "EMEA", "Department": "Field Sales"}
    # Graph refuses a path in $select, which is why the mapping selects the whole property
    refused = await directory.user_states([user_id], ["employeeOrgData.division"], tenant.service_principal_id)
    assert isinstance(refused[user_id], PermanentError) and refused[user_id].code == "Request_BadRequest"
