"""The Graph emulator's `POST /v1.0/$batch` over plain HTTP: validation, dispatch to the item routes,
per-item faults and dependsOn."""
from __future__ import annotations

import httpx
import pytest

from emulators.graph import Tenant
from emulators.graph.server import GraphEmulator


@pytest.fixture
def tenant() -> Tenant:
    return Tenant(seed=11)


def get(item_id: str, url: str, **extra: object) -> dict[str, object]:
    return {"id": item_id, "method": "GET", "url": url, **extra}


def batch(graph: GraphEmulator, http: httpx.Client, *requests: dict[str, object]) -> httpx.Response:
    return http.post(graph.base_url + "/$batch", json={"requests": list(requests)})


def by_id(response: httpx.Response) -> dict[str, dict]:
    assert response.status_code == 200, response.text
    return {item["id"]: item for item in response.json()["responses"]}


def test_items_are_served_by_their_routes_and_counted_under_them(graph, http, tenant):
    user = tenant.add_user(userPrincipalName="a@contoso.com", displayName="A")
    sp = tenant.add_service_principal("Salesforce")
    role = tenant.add_app_role(sp, "Sales User")
    tenant.assign(sp, user, role)

    items = by_id(batch(graph, http, get("u", f"/users/{user}?$select=displayName"),
                        get("r", f"users/{user}/appRoleAssignments?$filter=resourceId eq {sp}"),
                        get("missing", "/users/00000000-0000-0000-0000-000000000000")))

    assert items["u"]["status"] == 200 and items["u"]["body"]["displayName"] == "A"
    assert items["u"]["headers"]["Content-Type"].startswith("application/json")
    assert [a["appRoleId"] for a in items["r"]["body"]["value"]] == [role]
    assert items["missing"]["status"] == 404
    assert items["missing"]["body"]["error"]["code"] == "Request_ResourceNotFound"
    assert graph.calls["batch"] == 1
    assert graph.calls["users.get"] == 2 and graph.calls["users.appRoleAssignments"] == 1


def test_a_paged_item_carries_its_next_link(graph, http, tenant):
    user = tenant.add_user(userPrincipalName="a@contoso.com", displayName="A")
    sp = tenant.add_service_principal("Salesforce")
    for name in ("One", "Two", "Three"):
        tenant.assign(sp, user, tenant.add_app_role(sp, name))

    body = by_id(batch(graph, http, get("r", f"/users/{user}/appRoleAssignments")))["r"]["body"]

    assert len(body["value"]) == 2
    assert http.get(body["@odata.nextLink"]).json()["value"][0]["principalId"] == user


def test_a_throttled_item_carries_retry_after_and_the_rest_succeed(graph, http, tenant):
    users = [tenant.add_user(userPrincipalName=f"u{i}@contoso.com", displayName="U") for i in range(3)]
    graph.faults.add("users.get", 429, times=1, retry_after=7)

    items = by_id(batch(graph, http, *(get(str(i), f"/users/{u}") for i, u in enumerate(users))))

    throttled = [item for item in items.values() if item["status"] == 429]
    assert len(throttled) == 1 and throttled[0]["headers"]["Retry-After"] == "7"
    assert throttled[0]["body"]["error"]["code"] == "TooManyRequests"
    assert sorted(item["status"] for item in items.values()) == [200, 200, 429]


def test_a_fault_on_the_envelope_fails_the_whole_batch(graph, http, tenant):
    user = tenant.add_user(userPrincipalName="a@contoso.com", displayName="A")
    graph.faults.add("batch", 503, times=1, retry_after=1)

    response = batch(graph, http, get("u", f"/users/{user}"))

    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert graph.calls["users.get"] == 0


def test_an_item_whose_dependency_failed_gets_424_without_being_sent(graph, http, tenant):
    user = tenant.add_user(userPrincipalName="a@contoso.com", displayName="A")

    items = by_id(batch(graph, http, get("missing", "/users/00000000-0000-0000-0000-000000000000"),
                        get("after-missing", f"/users/{user}", dependsOn=["missing"]),
                        get("first", f"/users/{user}"),
                        get("after-first", f"/users/{user}", dependsOn=["first"])))

    assert items["after-missing"]["status"] == 424
    assert items["after-missing"]["body"]["error"]["code"] == "FailedDependency"
    assert items["after-first"]["status"] == 200
    assert graph.calls["users.get"] == 3


def test_an_item_with_a_body_is_sent_with_it(graph, http, tenant):
    sender = tenant.add_user(userPrincipalName="alerts@contoso.com", displayName="Alerts")
    mail = {"message": {"subject": "Hi", "body": {"contentType": "Text", "content": "x"},
                        "toRecipients": [{"emailAddress": {"address": "ops@contoso.com"}}]}}

    items = by_id(batch(graph, http, {"id": "m", "method": "POST", "url": f"/users/{sender}/sendMail",
                                      "headers": {"Content-Type": "application/json"}, "body": mail}))

    assert items["m"]["status"] == 202 and "body" not in items["m"]
    assert [m.subject for m in graph.outbox] == ["Hi"]


@pytest.mark.parametrize("requests, reason", [
    ([get(str(i), "/users") for i in range(21)], "exceeds the maximum"),
    ([get("1", "/users/a"), get("1", "/users/b")], "unique ids"),
    ([get("1", "http://127.0.0.1/v1.0/users/a")], "relative"),
    ([get("1", "https://graph.microsoft.com/v1.0/users/a")], "relative"),
    ([{"id": "1", "method": "POST", "url": "/users/a/sendMail", "body": {}}], "Content-Type"),
    ([get("1", "/users/a", dependsOn=["2"])], "not in the batch"),
    ([get("1", "/users/a", dependsOn=["2"]), get("2", "/users/b", dependsOn=["1"])], "circular"),
    ([{"id": "1", "method": "TRACE", "url": "/users/a"}], "method"),
    ([], "non-empty"),
])
def test_a_malformed_batch_is_rejected_whole(graph, http, tenant, requests, reason):
    response = batch(graph, http, *requests)

    assert response.status_code == 400
    assert reason in response.json()["error"]["message"]
    assert graph.calls["batch"] == 1 and sum(graph.calls.values()) == 1


def test_items_need_the_envelope_to_be_authenticated(graph, tenant):
    user = tenant.add_user(userPrincipalName="a@contoso.com", displayName="A")
    response = httpx.post(graph.base_url + "/$batch", json={"requests": [get("u", f"/users/{user}")]},
                          headers={"Authorization": "Bearer wrong"})

    assert response.status_code == 401 and graph.calls["users.get"] == 0
