"""The local commands against the emulators: check, plan (read-only) and sync (no Service Bus)."""
from __future__ import annotations

import json
from typing import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from cli.__main__ import main
from cli.local_stack import LocalStack, environment, local_stack
from cli.provisioning_log import ProvisioningLog
from shared.adapters.state_sqlite import SqliteStateStore

WRITES = ("create", "update", "deactivate", "reactivate")


@pytest_asyncio.fixture(scope="module")
async def stack() -> AsyncIterator[LocalStack]:
    with local_stack(users=60) as running, environment(running.env):
        yield running


def test_check_reports_both_connections(stack: LocalStack, capsys):
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert "OK   Graph" in out and "OK   Salesforce" in out


def test_check_fails_clearly_when_salesforce_rejects_the_token(stack: LocalStack, capsys, monkeypatch):
    monkeypatch.setenv("SALESFORCE_ACCESS_TOKEN", "wrong-token")
    assert main(["check"]) == 1
    assert "FAIL Salesforce" in capsys.readouterr().out


def test_plan_is_read_only_then_sync_applies_it(stack: LocalStack, capsys):
    writes, users = stack.org.calls.writes, len(stack.org.users())
    assert main(["plan", "--json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert stack.org.calls.writes == writes and len(stack.org.users()) == users
    creates = {p["entraId"] for p in planned if p["action"] == "create" and not p["error"]}
    assert creates and all(p["changes"]["Username"][0] is None for p in planned if p["action"] == "create")

    main(["sync", "--json"])
    applied = json.loads(capsys.readouterr().out)
    created = {a["entraId"] for a in applied if a["action"] == "create" and not a["error"]}
    assert created and created <= creates  # licences may run out for some of the planned ones

    assert main(["plan", "--json"]) == 0
    replanned = json.loads(capsys.readouterr().out)
    assert not {p["entraId"] for p in replanned if p["action"] == "create"} & created


def test_bad_settings_exit_2_with_every_problem_named(stack: LocalStack, capsys, monkeypatch):
    monkeypatch.setenv("SALESFORCE_AUTH_MODE", "jwt")
    monkeypatch.delenv("NOTIFY_RECIPIENTS")
    assert main(["check"]) == 2
    err = capsys.readouterr().err
    assert "SALESFORCE_CONSUMER_KEY" in err and "SALESFORCE_PRIVATE_KEY" in err and "NOTIFY_RECIPIENTS" in err
    assert "dev-graph-token" not in err  # values are never printed


def test_relink_points_a_user_at_another_salesforce_account_which_sync_then_updates(stack: LocalStack, capsys):
    user_id = stack.tenant.add_user(userPrincipalName="marta.relink@contoso.com", mail="marta.relink@contoso.com",
                                    givenName="Marta", surname="Relink", displayName="Marta Relink",
                                    accountEnabled=True)
    stack.tenant.assign(stack.demo.service_principal_id, user_id, stack.demo.app_role_ids["Chatter Free User"])
    upn = stack.tenant.find_user(user_id)["userPrincipalName"]
    legacy = stack.org.create_user({
        "Username": "renamed.legacy@contoso-old.com", "LastName": "Old", "Email": "old@contoso-old.com", "Alias": "old",
        "TimeZoneSidKey": "America/Los_Angeles", "LocaleSidKey": "en_US", "EmailEncodingKey": "ISO-8859-1",
        "LanguageLocaleKey": "en_US", "ProfileId": stack.org.profile_id("Chatter Free User"),
    })
    assert main(["relink", "--entra-id", user_id, "--salesforce-id", legacy]) == 0
    assert main(["relink", "--entra-id", user_id, "--salesforce-id", "005000000000000AAA"]) == 2
    assert main(["relink", "--entra-id", "not-a-guid", "--salesforce-id", legacy]) == 2
    capsys.readouterr()
    stack.tenant.update_user(user_id, surname="Relinked")
    main(["sync", "--json"])
    relinked = stack.org.get_user(legacy)
    assert relinked["Username"].lower() == upn.lower() and relinked["LastName"] == "Relinked"
    assert sum(1 for u in stack.org.users() if u["Username"].lower() == upn.lower()) == 1


def _assigned_user(stack: LocalStack, name: str) -> str:
    user_id = stack.tenant.add_user(userPrincipalName=f"{name}@contoso.com", mail=f"{name}@contoso.com",
                                    givenName=name.title(), surname="Cli", displayName=f"{name.title()} Cli",
                                    accountEnabled=True)
    stack.tenant.assign(stack.demo.service_principal_id, user_id, stack.demo.app_role_ids["Chatter Free User"])
    return user_id


@pytest.fixture
def state(stack: LocalStack) -> Iterator[SqliteStateStore]:
    """The CLI's state store, read directly to see what the commands did."""
    with SqliteStateStore(stack.env["STATE_SQLITE_PATH"]) as store:
        yield store


def test_relink_refuses_a_salesforce_user_linked_to_someone_else_unless_forced(stack: LocalStack, state, capsys):
    owner, newcomer = _assigned_user(stack, "owner.link"), _assigned_user(stack, "newcomer.link")
    main(["sync", "--json"])
    capsys.readouterr()
    owners_account = state.get_link(owner).salesforce_id

    assert main(["relink", "--entra-id", newcomer, "--salesforce-id", owners_account]) == 2
    err = capsys.readouterr().err
    assert owner in err and newcomer in err and owners_account in err and "--force" in err
    assert state.get_link(owner).salesforce_id == owners_account  # nothing changed
    assert state.get_link(newcomer).salesforce_id != owners_account

    assert main(["relink", "--entra-id", owner, "--salesforce-id", owners_account]) == 0  # its own link: fine
    assert main(["relink", "--entra-id", newcomer, "--salesforce-id", owners_account, "--force"]) == 0
    assert state.get_link(newcomer).salesforce_id == owners_account
    assert state.get_link(owner) is None  # moved, so the owner is matched afresh next time


def test_unlink_forgets_the_link_and_the_next_sync_matches_afresh(stack: LocalStack, state, capsys):
    user_id = _assigned_user(stack, "unlink.me")
    main(["sync", "--json"])
    account = state.get_link(user_id).salesforce_id
    # Someone pointed the user at the wrong account; unlinking lets matching by Username find the right one.
    wrong = stack.org.create_user({
        "Username": "wrong.account@contoso-old.com", "LastName": "Wrong", "Email": "wrong@contoso-old.com",
        "Alias": "wrong", "TimeZoneSidKey": "America/Los_Angeles", "LocaleSidKey": "en_US",
        "EmailEncodingKey": "ISO-8859-1", "LanguageLocaleKey": "en_US",
        "ProfileId": stack.org.profile_id("Chatter Free User"),
    })
    assert main(["relink", "--entra-id", user_id, "--salesforce-id", wrong]) == 0
    capsys.readouterr()

    assert main(["unlink", "--entra-id", user_id.upper()]) == 0
    out = capsys.readouterr().out
    assert f"unlinked entra={user_id}" in out and wrong in out
    assert state.get_link(user_id) is None and stack.org.get_user(wrong)["Username"].startswith("wrong.account")
    assert main(["unlink", "--entra-id", user_id]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main(["unlink", "--entra-id", "not-a-guid"]) == 2

    stack.tenant.update_user(user_id, surname="Matched")
    main(["sync", "--json"])
    assert state.get_link(user_id).salesforce_id == account
    assert stack.org.get_user(account)["LastName"] == "Matched"
    assert stack.org.get_user(wrong)["LastName"] == "Wrong"


def test_the_provisioning_log_of_a_sync_matches_its_plan(stack: LocalStack, capsys):
    """For every user the sync reconciles, the provisioning log records the write the plan showed (same
    action, same Salesforce user, same fields) and no write the plan did not show. (The plan covers
    every user in scope; the sync only the changed ones, so earlier failures stay planned, not synced.)"""
    renamed, leaver = _assigned_user(stack, "plan.rename"), _assigned_user(stack, "plan.leaver")
    main(["sync", "--json"])
    stack.tenant.update_user(renamed, surname="Renamed", jobTitle="Buyer")
    stack.tenant.update_user(leaver, accountEnabled=False)
    hired = _assigned_user(stack, "plan.hire")
    capsys.readouterr()

    assert main(["plan", "--json"]) == 0
    planned = {p["entraId"]: p for p in json.loads(capsys.readouterr().out)}
    with ProvisioningLog() as log:
        assert main(["sync", "--json"]) == 0
    capsys.readouterr()
    logged = {op["entra_id"]: op for op in log.operations()}

    assert {hired, renamed, leaver} <= logged.keys()
    for user_id, op in logged.items():
        plan = planned.get(user_id, {"action": None, "changes": {}, "error": None, "salesforceId": None})
        assert (op["action"] in WRITES) == (plan["action"] in WRITES and not plan["error"]), user_id
        if op["action"] in WRITES:
            assert (op["action"], op["status"]) == (plan["action"], "success"), user_id
            assert set(op["modified_properties"].split(",")) == set(plan["changes"]), user_id
            assert plan["salesforceId"] in (None, op["salesforce_id"]), user_id
    assert planned[renamed]["changes"]["LastName"] == ["Cli", "Renamed"]
    assert planned[leaver]["changes"]["IsActive"] == [True, False]
    assert planned[hired]["action"] == "create" and planned[hired]["salesforceId"] is None
