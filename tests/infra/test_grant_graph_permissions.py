"""scripts/grant-graph-permissions.sh against a stand-in for `az rest` (tests/infra/fake_az.py) that
keeps a tenant's app role assignments: the script grants exactly the app's permissions, is
idempotent, asks for Application.ReadWrite.OwnedBy only with its flag, and never revokes."""
from __future__ import annotations

import json
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "grant-graph-permissions.sh"
GRAPH_URL = "https://graph.microsoft.com"
NEEDED = ["User.Read.All", "GroupMember.Read.All", "Application.Read.All", "Mail.Send"]
OWNED_BY = "Application.ReadWrite.OwnedBy"


@dataclass
class Tenant:
    state_file: Path
    env: dict[str, str]
    identity: str
    role_ids: dict[str, str]

    def run(self, *args: str, principal: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(SCRIPT), "--principal-id", principal or self.identity, *args],
            env=self.env, capture_output=True, text=True, timeout=60,
        )

    @property
    def state(self) -> dict:
        return json.loads(self.state_file.read_text())

    def granted(self) -> set[str]:
        names = {v: k for k, v in self.role_ids.items()}
        return {names[a["appRoleId"]] for a in self.state["assignments"][self.identity]}

    def posts(self) -> int:
        return sum(r["method"] == "POST" for r in self.state["requests"])


@pytest.fixture
def tenant(tmp_path: Path) -> Tenant:
    role_ids = {name: str(uuid.uuid4()) for name in [*NEEDED, OWNED_BY, "Directory.ReadWrite.All"]}
    app_roles = [{"value": name, "id": rid, "allowedMemberTypes": ["Application"]} for name, rid in role_ids.items()]
    # a role offered to users only, with a name the script asks for: it must not be the one assigned
    app_roles.insert(0, {"value": "Mail.Send", "id": str(uuid.uuid4()), "allowedMemberTypes": ["User"]})
    identity = str(uuid.uuid4())
    state_file = tmp_path / "tenant.json"
    state_file.write_text(json.dumps({
        "graph_url": GRAPH_URL,
        "graph_service_principal": {"id": str(uuid.uuid4()), "appId": "00000003-0000-0000-c000-000000000000", "appRoles": app_roles},
        "assignments": {identity: []},
        "requests": [],
    }))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    az = bin_dir / "az"
    az.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).with_name("fake_az.py")}" "$@"\n')
    az.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_GRAPH_STATE": str(state_file)}
    return Tenant(state_file, env, identity, role_ids)


def test_grants_exactly_the_apps_permissions_then_nothing_on_a_second_run(tenant: Tenant) -> None:
    first = tenant.run()
    assert first.returncode == 0, first.stderr
    assert tenant.granted() == set(NEEDED)
    assert sorted(first.stdout.splitlines()) == sorted(f"granted: {p}" for p in NEEDED)

    second = tenant.run()
    assert second.returncode == 0, second.stderr
    assert tenant.posts() == len(NEEDED)
    assert sorted(second.stdout.splitlines()) == sorted(f"already granted: {p}" for p in NEEDED)


def test_profile_import_permission_only_with_its_flag_and_never_revoked(tenant: Tenant) -> None:
    assert tenant.run().returncode == 0
    with_flag = tenant.run("--with-profile-import")
    assert with_flag.returncode == 0, with_flag.stderr
    assert tenant.granted() == {*NEEDED, OWNED_BY}
    assert f"granted: {OWNED_BY}" in with_flag.stdout.splitlines()

    without_flag = tenant.run()
    assert without_flag.returncode == 0
    assert tenant.granted() == {*NEEDED, OWNED_BY}
    assert f"note: the identity also holds {OWNED_BY}, which this app does not need" in without_flag.stdout


def test_without_mail_send_leaves_it_to_exchange(tenant: Tenant) -> None:
    result = tenant.run("--without-mail-send")
    assert result.returncode == 0, result.stderr
    assert tenant.granted() == set(NEEDED) - {"Mail.Send"}


def test_dry_run_grants_nothing(tenant: Tenant) -> None:
    result = tenant.run("--dry-run")
    assert result.returncode == 0, result.stderr
    assert tenant.posts() == 0 and tenant.granted() == set()
    assert sorted(result.stdout.splitlines()) == sorted(f"would grant: {p}" for p in NEEDED)


def test_refuses_a_principal_id_that_is_not_an_object_id(tenant: Tenant) -> None:
    result = tenant.run(principal="my-function-app")
    assert result.returncode == 2
    assert "--principal-id" in result.stderr
    assert tenant.state["requests"] == []


def test_a_failing_graph_call_stops_the_script(tenant: Tenant) -> None:
    result = tenant.run(principal=str(uuid.uuid4()))  # no such service principal
    assert result.returncode != 0
    assert "Request_ResourceNotFound" in result.stderr
    assert tenant.posts() == 0
