"""python -m cli import-profiles [--dry-run] [--json]: Salesforce profiles → app roles, as a table."""
from __future__ import annotations

import json

from shared.services.import_profiles import ProfileImportResult

# Roles the import does not manage are listed only with --json; the table shows what the import owns.
_TABLE_ACTIONS = ("added", "disabled", "re-enabled", "renamed", "unchanged", "name taken")


def print_import(result: ProfileImportResult, *, dry_run: bool, as_json: bool) -> None:
    plan = result.plan
    if as_json:
        print(json.dumps({
            "applicationObjectId": result.application.object_id, "appId": result.application.app_id,
            "dryRun": dry_run, "applied": result.applied,
            "roles": [{"action": c.action, "displayName": c.display_name, "value": c.value, "id": c.role_id,
                       "isEnabled": c.is_enabled}
                      for c in plan.changes],
        }, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"App roles of application {result.application.object_id}" + (" (dry run)" if dry_run else ""))
    for column in ("action", "profile (display name)", "value (profile Id)", "enabled", "role id"):
        table.add_column(column)
    for change in sorted((c for c in plan.changes if c.action in _TABLE_ACTIONS),
                         key=lambda c: (_TABLE_ACTIONS.index(c.action), c.display_name.casefold())):
        table.add_row(change.action, change.display_name, change.value or "-", "yes" if change.is_enabled else "no",
                      change.role_id)
    console = Console()
    console.print(table)
    counts = ", ".join(f"{plan.count(a)} {a}" for a in _TABLE_ACTIONS if plan.count(a))
    others = plan.count("not managed")
    verb = "would change" if dry_run else "changed"
    console.print(f"{counts or 'no profiles'}; {others} other role(s) left as they are. "
                  + (f"The import {verb} the application's app roles." if plan.needs_write else "Nothing to do."))
