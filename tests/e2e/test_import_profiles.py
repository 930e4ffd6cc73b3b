"""`python -m cli import-profiles` against the emulators: Salesforce profiles become app roles of the
Entra application through the real simple-salesforce and msgraph-sdk clients, and provisioning uses
them."""
from __future__ import annotations

import json
from typing import Iterator

import pytest

from cli.__main__ import main
from cli.local_stack import LocalStack, environment, local_stack


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with local_stack(users=40) as running, environment(running.env):
        yield running


def app_roles(stack: LocalStack) -> list[dict]:
    return [role.to_json() for role in stack.tenant.service_principal(stack.demo.service_principal_id).app_roles]


def import_json(capsys, *args: str) -> dict:
    capsys.readouterr()
    assert main(["import-profiles", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_import_adds_renames_and_disables_roles_and_leaves_other_roles_alone(stack: LocalStack, capsys):
    org, graph = stack.org, stack.graph
    marketing = org.add_profile("Marketing User", "Salesforce")
    temporary = org.add_profile("Temporary Profile", "Chatter Free")
    org.set_license_pool("Customer Community", 10)
    org.add_profile("Customer Community User", "Customer Community")  # a portal licence: not importable
    hand_made = app_roles(stack)  # the demo's roles, made by hand with other values, and msiam_access

    planned = import_json(capsys, "--dry-run")
    assert planned["dryRun"] and not planned["applied"]
    assert sorted(r["displayName"] for r in planned["roles"] if r["action"] == "added") == [
        "Marketing User", "Temporary Profile"]
    assert {r["action"] for r in planned["roles"] if r["displayName"] in stack.demo.app_role_ids} <= {
        "not managed", "name taken"}
    assert graph.calls["applications.update"] == 0 and app_roles(stack) == hand_made

    capsys.readouterr()
    assert main(["import-profiles"]) == 0
    out = capsys.readouterr().out
    assert "Marketing User" in out and "added" in out and "Customer Community" not in out
    roles = app_roles(stack)
    assert roles[:len(hand_made)] == hand_made  # untouched, in place
    added = {r["displayName"]: r for r in roles[len(hand_made):]}
    assert set(added) == {"Marketing User", "Temporary Profile"}
    assert added["Marketing User"]["value"] == marketing and added["Marketing User"]["isEnabled"]

    again = import_json(capsys)
    assert not again["applied"] and graph.calls["applications.update"] == 1
    assert main(["import-profiles"]) == 0 and "Nothing to do" in capsys.readouterr().out

    org.rename_profile(marketing, "Marketing Rep")
    org.delete_profile(temporary)
    changed = {r["value"]: r for r in import_json(capsys)["roles"]}
    assert changed[marketing]["action"] == "renamed" and changed[marketing]["displayName"] == "Marketing Rep"
    assert changed[temporary]["action"] == "disabled" and not changed[temporary]["isEnabled"]
    assert graph.calls["applications.update"] == 3  # a rename disables first, then renames and enables
    now = {r["value"]: r for r in app_roles(stack)}
    assert now[marketing]["id"] == added["Marketing User"]["id"] and now[marketing]["isEnabled"]
    assert now[temporary]["id"] == added["Temporary Profile"]["id"] and not now[temporary]["isEnabled"]


def test_a_user_assigned_an_imported_role_is_created_with_that_profile(stack: LocalStack, capsys):
    org, tenant = stack.org, stack.tenant
    profile = org.add_profile("Field Sales", "Salesforce")
    org.set_license_pool("Salesforce", 1000)
    imported = {r["value"]: r for r in import_json(capsys)["roles"]}[profile]
    assert imported["action"] == "added"
    user = tenant.add_user(userPrincipalName="field.rep@contoso.com", mail="field.rep@contoso.com",
                           givenName="Field", surname="Rep", displayName="Field Rep", accountEnabled=True)
    tenant.assign(stack.demo.service_principal_id, user, imported["id"])
    main(["sync", "--json"])
    created = [u for u in org.users() if u["Username"] == "field.rep@contoso.com"]
    assert len(created) == 1 and created[0]["ProfileId"] == profile


def test_import_reports_an_unknown_application_clearly(stack: LocalStack, capsys, monkeypatch):
    monkeypatch.setenv("SALESFORCE_APPLICATION_ID", "0f0f0f0f-0000-4000-8000-000000000000")
    assert main(["import-profiles"]) == 1
    assert "Request_ResourceNotFound" in capsys.readouterr().err
    monkeypatch.setenv("SALESFORCE_APPLICATION_ID", stack.tenant.application(stack.demo.application_id).app_id)
    assert main(["import-profiles", "--dry-run"]) == 0  # an appId works as well as the object id
