"""A mapping file sets the Salesforce Role (UserRoleId) from a role name: a Switch on the department
gives the name, the engine resolves it with one cached query, and an unknown name fails that user
alone with UserRoleNotFound."""
from __future__ import annotations

import json
from pathlib import Path

from cli.__main__ import main
from cli.local_stack import environment, local_stack

DEFAULT = Path(__file__).resolve().parents[2] / "config" / "mapping.default.toml"
ROLE_MAPPING = '''
[fields.UserRoleName]
type = "Expression"
expression = 'Switch([department], "", "Sales", "Western Sales", "Support", "SupportTeam", "Finance", "Treasury")'
'''


def test_sync_sets_user_role_id_from_the_mapped_role_name(tmp_path, capsys):
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(DEFAULT.read_text(encoding="utf-8") + ROLE_MAPPING, encoding="utf-8")
    with local_stack(users=60) as stack, environment({**stack.env, "MAPPING_FILE": str(mapping)}):
        org = stack.org
        org.set_license_pool("Salesforce", 1000)
        sales = org.add_user_role("Western Sales", "WesternSales")
        support = org.add_user_role("Support Team", "SupportTeam")  # mapped by its DeveloperName
        main(["sync", "--json"])
        results = {r["entraId"]: r for r in json.loads(capsys.readouterr().out)}

        created = {u["Username"]: u for u in org.users()}
        checked = set()
        for entra_id, result in results.items():
            department = (stack.tenant.find_user(entra_id) or {}).get("department")
            if result["error"] == "UserRoleNotFound":  # no role named Treasury: that user alone fails
                assert department == "Finance" and result["action"] is None  # nothing planned, nothing sent
                checked.add(department)
            elif result["action"] == "create" and result["error"] is None:
                assert department != "Finance"
                expected = {"Sales": sales, "Support": support}.get(department)  # other departments: no role
                assert created[result["changes"]["Username"][1]].get("UserRoleId") == expected
                checked.add(department)
        assert {"Sales", "Support", "Finance", "Marketing"} <= checked
