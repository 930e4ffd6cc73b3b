"""The Graph emulator over plain HTTP: the wire behaviour the adapter tests do not reach."""
from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from emulators.graph import Tenant
from emulators.graph.demo_tenant import apply_demo_changes, seed_demo_tenant


def add_users(tenant: Tenant, count: int) -> list[str]:
    return [tenant.add_user(userPrincipalName=f"u{i}@contoso.com", displayName=f"U{i}", jobTitle="t")
            for i in range(count)]


def sync(http: httpx.Client, url: str) -> tuple[list[dict], str]:
    objects = []
    while True:
        body = http.get(url).json()
        objects += body["value"]
        if "@odata.deltaLink" in body:
            assert "@odata.nextLink" not in body
            return objects, body["@odata.deltaLink"]
        url = body["@odata.nextLink"]


@pytest.mark.parametrize("path", ["/users/delta", "/users/delta()", "/users/microsoft.graph.delta()",
                                  "//users/delta()", "/users/delta/"])
def test_delta_path_variants(graph, http, tenant, path):
    add_users(tenant, 1)
    response = http.get(graph.base_url + path, params={"$select": "displayName"})
    assert response.status_code == 200 and response.json()["value"][0]["displayName"] == "U0"
    assert graph.calls["users.delta"] == 1


def test_requests_without_the_dev_token_get_401_in_a_graph_envelope(graph):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {graph.token}"}):
        response = httpx.get(graph.base_url + "/users/delta", headers=headers)
        assert response.status_code == 401
        error = response.json()["error"]
        assert error["code"] == "InvalidAuthenticationToken" and "request-id" in error["innerError"]


def test_only_selected_properties_are_returned_and_tracked(graph, http, tenant):
    first, second = add_users(tenant, 2)
    objects, delta_link = sync(http, graph.base_url + "/users/delta?$select=displayName")
    assert all(set(o) == {"id", "displayName"} for o in objects)
    tenant.update_user(first, jobTitle="untracked")
    tenant.update_user(second, displayName="tracked")
    tenant.update_user(second, displayName="tracked")  # no real change: nothing logged
    objects, _ = sync(http, delta_link)
    assert objects == [{"displayName": "tracked", "id": second}]


def test_a_property_set_to_null_comes_back_as_null_and_an_unset_one_is_omitted(graph, http, tenant):
    user = tenant.add_user(userPrincipalName="n@contoso.com", displayName="N", mail="n@contoso.com")
    _, delta_link = sync(http, graph.base_url + "/users/delta?$select=displayName,mail,surname")
    tenant.update_user(user, mail=None)
    objects, _ = sync(http, delta_link)
    assert objects == [{"displayName": "N", "mail": None, "id": user}]


def test_sync_from_now_with_deltatoken_latest(graph, http, tenant):
    add_users(tenant, 3)
    body = http.get(graph.base_url + "/users/delta?$deltatoken=latest").json()
    assert body["value"] == [] and "@odata.deltaLink" in body
    new = tenant.add_user(userPrincipalName="late@contoso.com", displayName="Late")
    objects, _ = sync(http, body["@odata.deltaLink"])
    assert [o["id"] for o in objects] == [new]


def test_a_user_deleted_during_an_initial_sync_makes_no_one_else_missing(graph, http, tenant):
    user_ids = sorted(add_users(tenant, 6))
    body = http.get(graph.base_url + "/users/delta").json()
    tenant.hard_delete_user(user_ids[0])  # already served; an offset-based cursor would now skip one
    objects, delta_link = sync(http, body["@odata.nextLink"])
    assert sorted(o["id"] for o in body["value"] + objects) == user_ids
    objects, _ = sync(http, delta_link)
    assert objects == [{"id": user_ids[0], "@removed": {"reason": "deleted"}}]


def test_replayed_objects_repeat_the_end_of_the_previous_page(graph, http, tenant):
    user_ids = sorted(add_users(tenant, 5))
    graph.delta.replay = 1
    objects, _ = sync(http, graph.base_url + "/users/delta")
    assert [o["id"] for o in objects] == [user_ids[0], user_ids[1], user_ids[1], user_ids[2], user_ids[2],
                                          user_ids[3], user_ids[3], user_ids[4], user_ids[4]]


def test_token_errors(graph, http, tenant):
    add_users(tenant, 3)
    body = http.get(graph.base_url + "/users/delta").json()
    graph.delta.gone_requests = 1
    gone = http.get(body["@odata.nextLink"])
    assert gone.status_code == 410 and gone.headers["Location"].endswith("/v1.0/users/delta?$deltatoken=")
    restart, _ = sync(http, gone.headers["Location"])  # following the Location is a full sync
    assert len(restart) == 3
    graph.delta.expire_tokens()
    expired = http.get(body["@odata.nextLink"])
    assert expired.status_code == 400 and expired.json()["error"]["code"] == "syncStateNotFound"
    assert http.get(graph.base_url + "/users/delta?$skiptoken=garbage").status_code == 400
    both = http.get(body["@odata.nextLink"].replace("?", "?$select=mail&"))
    assert both.status_code == 400


@pytest.mark.parametrize("query", ["$orderby=displayName", "$expand=manager", "$filter=accountEnabled eq true",
                                   "$select=displayName,notAProperty"])
def test_unsupported_delta_queries_are_refused(graph, http, query):
    response = http.get(f"{graph.base_url}/users/delta?{query}")
    assert response.status_code == 400 and response.json()["error"]["code"].startswith("Request_")


def test_get_user_by_id_or_upn_and_404_for_missing(graph, http, tenant):
    user, soft, hard = add_users(tenant, 3)
    tenant.soft_delete_user(soft)
    tenant.hard_delete_user(hard)
    body = http.get(f"{graph.base_url}/users/U0%40contoso.com", params={"$select": "displayName,mail"}).json()
    assert (body["id"], body["displayName"], body["mail"]) == (user, "U0", None)
    for missing in (soft, hard, "0f0f0f0f-0000-4000-8000-000000000000"):
        response = http.get(f"{graph.base_url}/users/{missing}")
        assert response.status_code == 404 and response.json()["error"]["code"] == "Request_ResourceNotFound"


def test_list_paging_with_top_and_skiptoken(graph, http, tenant):
    sp = tenant.add_service_principal("Salesforce")
    role = tenant.add_app_role(sp, "Standard User", value="StandardUser")
    for user_id in add_users(tenant, 5):
        tenant.assign(sp, user_id, role)
    url, pages, rows = f"{graph.base_url}/servicePrincipals/{sp}/appRoleAssignedTo?$top=2", 0, []
    while url:
        body = http.get(url).json()
        rows += body["value"]
        pages += 1
        url = body.get("@odata.nextLink")
    assert pages == 3 and len({r["id"] for r in rows}) == 5
    assert {r["resourceId"] for r in rows} == {sp} and {r["appRoleId"] for r in rows} == {role}
    assert http.get(f"{graph.base_url}/servicePrincipals/{sp}/appRoleAssignedTo?$top=1000").status_code == 400
    by_app_id = http.get(f"{graph.base_url}/servicePrincipals(appId='{tenant.service_principal(sp).app_id}')")
    assert by_app_id.json()["appRoles"][0]["displayName"] == "Standard User"


def test_group_members_are_direct_with_types_and_casts(graph, http, tenant):
    user, nested_user = add_users(tenant, 2)
    group, nested = tenant.add_group("Sales"), tenant.add_group("Contractors")
    tenant.add_member(group, user)
    tenant.add_member(group, nested)
    tenant.add_member(nested, nested_user)
    members = http.get(f"{graph.base_url}/groups/{group}/members").json()["value"]
    assert [(m["@odata.type"], m["id"]) for m in members] == [("#microsoft.graph.user", user),
                                                              ("#microsoft.graph.group", nested)]
    for cast in ("graph.user", "microsoft.graph.user"):
        only_users = http.get(f"{graph.base_url}/groups/{group}/members/{cast}").json()["value"]
        assert [m["id"] for m in only_users] == [user]


def test_check_member_groups_is_transitive_and_refuses_what_graph_refuses(graph, http, tenant):
    user, other = add_users(tenant, 2)
    sales, contractors, empty = tenant.add_group("Sales"), tenant.add_group("Contractors"), tenant.add_group("Empty")
    tenant.add_member(sales, contractors)
    tenant.add_member(contractors, user)
    unknown = "00000000-0000-4000-8000-000000000001"
    url = f"{graph.base_url}/users/{user}/checkMemberGroups"

    answer = http.post(url, json={"groupIds": [sales.upper(), empty, unknown, contractors]})
    assert answer.status_code == 200 and answer.json()["value"] == [sales.upper(), contractors]
    assert http.post(f"{graph.base_url}/users/{other}/microsoft.graph.checkMemberGroups",
                     json={"groupIds": [sales]}).json()["value"] == []
    malformed = http.post(url, json={"groupIds": [sales, "Sales"]})
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "Request_BadRequest"
    assert http.post(url, json={"groupIds": [unknown] * 21}).status_code == 400
    assert http.post(f"{graph.base_url}/users/{unknown}/checkMemberGroups", json={"groupIds": [sales]}).status_code == 404


def test_user_app_role_assignments_include_direct_group_ones_and_filter_by_resource(graph, http, tenant):
    user, = add_users(tenant, 1)
    sp, other_sp = tenant.add_service_principal("Salesforce"), tenant.add_service_principal("Other")
    role, other_role = tenant.add_app_role(sp, "Sales User"), tenant.add_app_role(other_sp, "Reader")
    group = tenant.add_group("Sales")
    tenant.add_member(group, user)
    tenant.assign(sp, group, role)
    tenant.assign(other_sp, user, other_role)
    url = f"{graph.base_url}/users/{user}/appRoleAssignments"
    assert len(http.get(url).json()["value"]) == 2
    filtered = http.get(url, params={"$filter": f"resourceId eq {sp}"}).json()["value"]
    assert [(a["principalType"], a["appRoleId"]) for a in filtered] == [("Group", role)]
    assert http.get(url, params={"$filter": "appRoleId eq 'x'"}).status_code == 400


def test_send_mail_matches_keys_case_insensitively_and_refuses_bad_bodies(graph, http, tenant):
    tenant.add_user(userPrincipalName="alerts@contoso.com", displayName="Alerts")
    url = f"{graph.base_url}/users/alerts%40contoso.com/sendMail"
    accepted = http.post(url, json={"Message": {"Subject": "s", "BODY": {"contentType": "HTML", "content": "<b>x</b>"},
                                                "toRecipients": [{"EmailAddress": {"Address": "a@contoso.com"}}]},
                                    "SaveToSentItems": False})
    assert accepted.status_code == 202 and accepted.content == b""
    assert graph.outbox[0].content_type == "html" and graph.outbox[0].to == ("a@contoso.com",)
    for bad in ({}, {"message": {"subject": "no recipients"}}, {"message": {"toRecipients": [{"x": 1}]}}):
        response = http.post(url, json=bad)
        assert response.status_code == 400 and response.json()["error"]["code"] == "ErrorInvalidRequest"
    assert http.post(url, content=b"not json").status_code == 400
    assert len(graph.outbox) == 1


def test_fault_rules_fire_the_given_number_of_times_and_html_502(graph, http, tenant):
    add_users(tenant, 1)
    graph.faults.add("users.*", 503, times=2, retry_after=7)
    graph.faults.add("/v1.0/groups/*", 502)
    first = http.get(f"{graph.base_url}/users/delta")
    assert first.status_code == 503 and first.headers["Retry-After"] == "7"
    assert first.json()["error"]["code"] == "serviceNotAvailable"
    assert http.get(f"{graph.base_url}/users/u0@contoso.com").status_code == 503
    assert http.get(f"{graph.base_url}/users/delta").status_code == 200
    gateway = http.get(f"{graph.base_url}/groups/whatever/members")
    assert gateway.status_code == 502 and gateway.headers["Content-Type"].startswith("text/html")
    assert graph.calls == {"users.delta": 2, "users.get": 1, "groups.members": 1}


def test_an_empty_fault_answers_lists_with_no_items_then_the_truth(graph, http, tenant):
    add_users(tenant, 3)
    graph.faults.add_empty("users.delta", times=1)
    empty = http.get(f"{graph.base_url}/users/delta")
    assert empty.status_code == 200 and empty.json()["value"] == [] and "@odata.nextLink" not in empty.json()
    assert http.get(f"{graph.base_url}/users/delta").json()["value"]  # once only


def test_a_fault_rate_is_seeded_and_partial(graph, http, tenant):
    add_users(tenant, 1)
    graph.faults.add("users.get", 429, rate=0.5, retry_after=1)
    statuses = [http.get(f"{graph.base_url}/users/u0@contoso.com").status_code for _ in range(40)]
    assert set(statuses) == {200, 429}


def test_unknown_routes_and_methods_are_graph_errors(graph, http):
    assert http.get(f"{graph.base_url}/devices").status_code == 400
    assert http.delete(f"{graph.base_url}/users/delta").status_code == 405
    assert graph.calls["unmatched"] == 1


def test_the_demo_tenant_is_deterministic_and_has_every_population():
    first, second = Tenant(seed=1), Tenant(seed=1)
    summary = seed_demo_tenant(first, users=200, seed=11)
    assert summary == seed_demo_tenant(second, users=200, seed=11)
    assert summary != seed_demo_tenant(Tenant(seed=1), users=200, seed=12)
    for population in (summary.disabled_ids, summary.soft_deleted_ids, summary.hard_deleted_ids,
                       summary.two_role_ids, summary.nested_only_ids, summary.default_access_only_ids,
                       summary.unassigned_ids, summary.taken_usernames, *summary.messy.values()):
        assert population
    assert {"o'brien@contoso.com"} <= {first.find_user(u)["userPrincipalName"] for u in summary.messy["apostrophe"]
                                       if first.find_user(u)}
    assert all(first.user_state(u) == "soft_deleted" for u in summary.soft_deleted_ids)
    assert all(first.user_state(u) == "hard_deleted" for u in summary.hard_deleted_ids)
    assert all(not first.find_user(u)["accountEnabled"] for u in summary.disabled_ids)
    assert summary.nested_only_ids.isdisjoint(summary.expected_roles)
    assert all(len(summary.expected_roles[u]) == 2 for u in summary.two_role_ids)
    sp = summary.service_principal_id
    for user_id, roles in summary.expected_roles.items():
        assert {a.app_role_id for a in first.user_app_role_assignments(user_id) if a.resource_id == sp} == roles
    assert first.find_user(summary.notification_sender) is not None


def test_latency_is_added_to_every_request(graph, http):
    graph.faults.latency = 0.3
    http.get(f"{graph.base_url}/users/delta")
    http.get(f"{graph.base_url}/users/delta")
    graph.faults.latency = 0
    first, second = graph.requests
    assert second.at - first.at >= 0.3  # a lower bound only: a busy machine makes it longer, never shorter


def test_the_command_line_serves_a_seeded_demo_tenant():
    process = subprocess.Popen(
        [sys.executable, "-m", "emulators.graph", "--demo-users", "40", "--seed", "3", "--token", "cli-token"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("demo tenant: 40 users")
        banner = process.stdout.readline()
        base_url = re.search(r"(http://127\.0\.0\.1:\d+/v1\.0) ", banner).group(1)
        body = httpx.get(f"{base_url}/users/delta", headers={"Authorization": "Bearer cli-token"}).json()
        assert len(body["value"]) == 41 - 2 - 2  # 40 people and the mailbox, less 2 soft- and 2 hard-deleted
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0


def test_tenant_keeps_upns_unique_across_renames_deletes_and_restores():
    tenant = Tenant()
    first = tenant.add_user(userPrincipalName="A@contoso.com", displayName="A")
    with pytest.raises(ValueError):
        tenant.add_user(userPrincipalName="a@CONTOSO.com", displayName="Again")
    tenant.update_user(first, userPrincipalName="renamed@contoso.com")
    assert tenant.find_user("RENAMED@contoso.com")["id"] == first and tenant.find_user("a@contoso.com") is None
    with pytest.raises(ValueError):
        tenant.update_user(first, userPrincipalName=None)
    tenant.soft_delete_user(first)
    second = tenant.add_user(userPrincipalName="renamed@contoso.com", displayName="Reuses the name")
    with pytest.raises(ValueError):
        tenant.restore_user(first)  # nothing half-done: still soft-deleted
    assert tenant.user_state(first) == "soft_deleted"
    tenant.hard_delete_user(second)
    tenant.restore_user(first)
    assert tenant.find_user("renamed@contoso.com")["id"] == first


def test_demo_changes_match_their_oracle_and_show_up_in_delta(graph, http, tenant):
    demo = seed_demo_tenant(tenant, users=200, seed=11)
    _, delta_link = sync(http, graph.base_url + "/users/delta?$select=displayName,surname,mail,accountEnabled")
    changes = apply_demo_changes(tenant, demo, seed=4)
    sp = demo.service_principal_id
    live_with_roles = {}
    for user_id in tenant.user_ids:
        granted = {a.app_role_id for a in tenant.user_app_role_assignments(user_id) if a.resource_id == sp}
        if granted:
            live_with_roles[user_id] = granted
    assert live_with_roles == changes.expected_roles
    objects, _ = sync(http, delta_link)
    seen = {o["id"]: o.get("@removed", {}).get("reason") for o in objects}
    for user_id in changes.renamed_ids | changes.email_changed_ids | changes.disabled_ids | changes.hired_ids \
            | changes.restored_ids:
        assert seen[user_id] is None
    assert all(seen[u] == "changed" for u in changes.soft_deleted_ids)
    assert all(seen[u] == "deleted" for u in changes.hard_deleted_ids)
    assert not (changes.unassigned_ids | changes.role_changed_ids) & seen.keys()  # assignments are not in delta


def test_groups_delta_lists_members_then_net_changes_across_pages(graph, http, tenant):
    a, b, c = add_users(tenant, 3)
    sales, other = tenant.add_group("Sales"), tenant.add_group("Other")
    nested = tenant.add_group("Nested")
    for member in (a, b, nested):
        tenant.add_member(sales, member)
    tenant.add_member(other, c)
    first = f"{graph.base_url}/groups/delta?$filter=id eq '{sales}'&$select=id,members"

    objects, link = sync(http, first)  # page_size 2: Sales repeats on the second page
    assert [o["id"] for o in objects] == [sales, sales]
    assert [(m["@odata.type"], m["id"]) for o in objects for m in o["members@delta"]] == [
        ("#microsoft.graph.user", a), ("#microsoft.graph.user", b), ("#microsoft.graph.group", nested)]

    tenant.add_member(sales, c)
    tenant.remove_member(sales, a)
    tenant.add_member(sales, a)  # out and back in: no net change
    tenant.remove_member(sales, b)
    tenant.add_member(other, a)  # not a filtered group
    objects, _ = sync(http, link)
    members = {m["id"]: m for o in objects for m in o["members@delta"]}
    assert members[c] == {"@odata.type": "#microsoft.graph.user", "id": c}
    assert members[b]["@removed"] == {"reason": "deleted"}
    assert members[a] == {"@odata.type": "#microsoft.graph.user", "id": a}


def test_groups_delta_refuses_filters_graph_refuses(graph, http, tenant):
    too_many = " or ".join(f"id eq '00000000-0000-4000-8000-{n:012d}'" for n in range(51))
    for query in (f"$filter={too_many}", "$filter=displayName eq 'Sales'", "$select=members,owners"):
        answer = http.get(f"{graph.base_url}/groups/delta?{query}")
        assert answer.status_code == 400, query


def test_transitive_members_cast_is_an_advanced_query(graph, http, tenant):
    a, b = add_users(tenant, 2)
    sales, nested = tenant.add_group("Sales"), tenant.add_group("Nested")
    tenant.add_member(sales, a)
    tenant.add_member(sales, nested)
    tenant.add_member(nested, b)
    url = f"{graph.base_url}/groups/{sales}/transitiveMembers/microsoft.graph.user?$select=id&$count=true"

    assert http.get(url).status_code == 400  # no ConsistencyLevel header
    body = http.get(url + "&$top=5", headers={"ConsistencyLevel": "eventual"}).json()
    assert {m["id"] for m in body["value"]} == {a, b} and body["@odata.count"] == 2
    groups = http.get(f"{graph.base_url}/groups/{sales}/transitiveMembers/graph.group?$count=true",
                      headers={"ConsistencyLevel": "eventual"}).json()
    assert [m["id"] for m in groups["value"]] == [nested]
