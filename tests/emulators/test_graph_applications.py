"""The Graph emulator's /applications: appRoles read and replaced with Graph's rules, over plain HTTP."""
from __future__ import annotations

import pytest

from emulators.graph import Tenant

ROLE_A = "aaaaaaaa-0000-4000-8000-000000000001"
ROLE_B = "aaaaaaaa-0000-4000-8000-000000000002"


@pytest.fixture
def app(tenant: Tenant) -> dict[str, str]:
    sp = tenant.add_service_principal("Salesforce")
    tenant.add_app_role(sp, "Standard User", value="StandardUser", id=ROLE_A)
    return {"sp": sp, "id": tenant.add_application(sp), "appId": tenant.service_principal(sp).app_id}


def role(role_id: str, name: str, value: str | None, *, enabled: bool = True, **extra) -> dict:
    return {"id": role_id, "displayName": name, "value": value, "description": name, "isEnabled": enabled,
            "allowedMemberTypes": ["User"], **extra}


def test_application_by_object_id_or_app_id_with_the_service_principals_roles(graph, http, app):
    by_id = http.get(f"{graph.base_url}/applications/{app['id']}").json()
    by_app_id = http.get(f"{graph.base_url}/applications(appId='{app['appId']}')", params={"$select": "appRoles"}).json()
    assert by_id["appId"] == app["appId"] and by_id["appRoles"] == by_app_id["appRoles"]
    assert set(by_app_id) == {"@odata.context", "id", "appRoles"}
    assert [(r["id"], r["value"], r["origin"]) for r in by_id["appRoles"]] == [(ROLE_A, "StandardUser", "Application")]
    missing = http.get(f"{graph.base_url}/applications/{app['sp']}")  # a service principal's id is not an application's
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "Request_ResourceNotFound"


def test_patch_replaces_the_whole_collection_and_the_service_principal_shows_it(graph, http, app, tenant):
    url = f"{graph.base_url}/applications/{app['id']}"
    response = http.patch(url, json={"appRoles": [role(ROLE_A, "Standard User", "StandardUser"),
                                                  role(ROLE_B, "Sales User", "SalesUser")]})
    assert response.status_code == 204
    sp_roles = http.get(f"{graph.base_url}/servicePrincipals/{app['sp']}").json()["appRoles"]
    assert [r["value"] for r in sp_roles] == ["StandardUser", "SalesUser"]
    assert graph.calls["applications.update"] == 1


def test_an_enabled_role_cannot_be_removed_or_changed_only_disabled_first(graph, http, app):
    url = f"{graph.base_url}/applications/{app['id']}"
    for body in ({"appRoles": []}, {"appRoles": [role(ROLE_A, "Renamed", "StandardUser")]}):
        refused = http.patch(url, json=body)
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "CannotDeleteOrUpdateEnabledEntitlement"
    assert http.get(url).json()["appRoles"][0]["displayName"] == "Standard User"  # nothing changed

    assert http.patch(url, json={"appRoles": [role(ROLE_A, "Standard User", "StandardUser", enabled=False)]}).status_code == 204
    assert http.patch(url, json={"appRoles": [role(ROLE_A, "Renamed", "StandardUser")]}).status_code == 204
    assert http.get(url).json()["appRoles"][0]["displayName"] == "Renamed"


@pytest.mark.parametrize("bad, message", [
    (role(ROLE_B, "x", "has space"), "value"),
    (role(ROLE_B, "x", "v" * 121), "value"),
    (role(ROLE_B, "x", ".dot"), "value"),
    (role("not-a-guid", "x", "v"), "id"),
    (role(ROLE_B, "", "v"), "displayName"),
    (role(ROLE_B, "x", "v", allowedMemberTypes=["Group"]), "allowedMemberTypes"),
    (role(ROLE_B, "x", "standarduser"), "unique"),
    (role(ROLE_A, "x", "other"), "same id"),
])
def test_malformed_or_duplicate_roles_are_refused(graph, http, app, bad, message):
    keep = role(ROLE_A, "Standard User", "StandardUser")
    response = http.patch(f"{graph.base_url}/applications/{app['id']}", json={"appRoles": [keep, bad]})
    assert response.status_code == 400 and message in response.json()["error"]["message"]


def test_only_app_roles_can_be_patched(graph, http, app):
    response = http.patch(f"{graph.base_url}/applications/{app['id']}", json={"displayName": "x"})
    assert response.status_code == 400 and "appRoles" in response.json()["error"]["message"]
