"""The local commands against the emulators: check, plan (read-only) and sync (no Service Bus)."""
from __future__ import annotations

import json
from typing import AsyncIterator

import pytest_asyncio

from cli.__main__ import main
from cli.local_stack import LocalStack, environment, local_stack


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
