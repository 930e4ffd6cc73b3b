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
