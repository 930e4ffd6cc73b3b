"""python -m cli {demo,check,plan,sync,relink,unlink,import-profiles,held,release-held,reject-held,quarantine,
escrow}: local work on the provisioning engine."""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

DEMO_LOG = Path(".local/demo.log")


def _load_settings_file(path: str | None) -> None:
    """Put a local.settings.json's Values into the environment, as the Functions host does."""
    if not path:
        return
    import os

    values = json.loads(Path(path).read_text(encoding="utf-8")).get("Values", {})
    os.environ.update({k: str(v) for k, v in values.items() if v not in (None, "") and k not in os.environ})


def _results_table(results, title: str, *, as_json: bool, holds: dict[str, str] | None = None,
                   limit: int | None = None) -> None:
    """For `plan`: holds, Entra id → the status of its held deactivation (held, released, rejected);
    limit, the deactivations the deletion threshold allows per window (None: no threshold)."""
    from rich.console import Console
    from rich.table import Table

    from .operations import shown_action

    holds = holds or {}

    def granted(r) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return (r.permission_sets.added, r.permission_sets.removed) if r.permission_sets else ((), ())

    rows = [r for r in results if r.error is not None or (r.operation is not None and r.operation.is_write)
            or any(granted(r))]
    if as_json:
        print(json.dumps([
            {"entraId": r.entra_id, "action": shown_action(r, holds),
             "salesforceId": r.operation.salesforce_id if r.operation else None,
             "changes": {k: [o, n] for k, (o, n) in (r.operation.changes.items() if r.operation else [])},
             "permissionSets": {"add": list(granted(r)[0]), "remove": list(granted(r)[1])},
             "error": r.error.code if r.error else None}
            for r in rows
        ], indent=2, default=str))
        return
    table = Table(title=title)
    for col in ("Entra id", "action", "Salesforce id", "changes (old → new)", "permission sets", "error"):
        table.add_column(col)
    for r in rows:
        op = r.operation
        changes = "; ".join(f"{k}: {o!r} → {n!r}" for k, (o, n) in op.changes.items()) if op else ""
        added, removed = granted(r)
        table.add_row(r.entra_id, shown_action(r, holds) or "-", (op.salesforce_id or "-") if op else "-", changes,
                      " ".join([*(f"+{k}" for k in added), *(f"-{k}" for k in removed)]),
                      f"{r.error.code}: {r.error.message}" if r.error else "")
    console = Console()
    console.print(table)
    console.print(f"{len(rows)} of {len(results)} users need a change; the rest are in sync or out of scope.")
    held = sum(1 for r in rows if shown_action(r, holds) == "held")
    if held:
        console.print(f"{held} deactivations are held by the deletion threshold: `python -m cli held` lists them, "
                      "`release-held` or `reject-held` decides.")
    new = sum(1 for r in rows if shown_action(r, holds) == "deactivate" and holds.get(r.entra_id) != "released")
    if limit is not None and new > limit:
        console.print(f"{new} deactivations are planned, more than the deletion threshold allows per window ({limit}): "
                      "those beyond it will be held for your decision.")


async def _with_container(action):
    from shared.bootstrap import build_container
    from shared.settings import load_settings

    container = build_container(load_settings())
    try:
        return await action(container)
    finally:
        await container.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli", description=__doc__)
    parser.add_argument("--settings", help="a local.settings.json whose Values are used (environment wins)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every operation")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="provision a seeded tenant into emulators through the real functions")
    demo.add_argument("--users", type=int, default=1200)
    demo.add_argument("--seed", type=int, default=7)
    sub.add_parser("check", help="test the connection to Graph and Salesforce")
    plan = sub.add_parser("plan", help="dry run: what would be created, updated, deactivated (read-only)")
    plan.add_argument("--json", action="store_true")
    relink = sub.add_parser("relink", help="link an Entra user to a given Salesforce user (then reconcile it)")
    relink.add_argument("--entra-id", required=True)
    relink.add_argument("--salesforce-id", required=True)
    relink.add_argument("--force", action="store_true",
                        help="move the Salesforce user's link from the Entra user it is linked to now")
    unlink = sub.add_parser("unlink", help="forget an Entra user's link, so its next reconcile matches afresh")
    unlink.add_argument("--entra-id", required=True)
    profiles = sub.add_parser("import-profiles", help="import Salesforce profiles as app roles of the Entra application")
    profiles.add_argument("--dry-run", action="store_true", help="show what would change; write nothing")
    profiles.add_argument("--json", action="store_true")
    sync = sub.add_parser("sync", help="one detect-and-provision pass without Service Bus")
    sync.add_argument("--json", action="store_true")
    from . import quarantine_commands, safety_commands

    safety_commands.add_parsers(sub)
    quarantine_commands.add_parsers(sub)
    args = parser.parse_args(argv)
    console = logging.StreamHandler()
    handlers: list[logging.Handler] = [console]
    if args.command == "demo":  # the demo fails users on purpose: its log goes to a file, the summary to the screen
        console.setLevel(logging.INFO if args.verbose else logging.CRITICAL)
        DEMO_LOG.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(DEMO_LOG, mode="w", encoding="utf-8"))
    else:
        console.setLevel(logging.INFO if args.verbose else logging.WARNING)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers)
    logging.getLogger("proton").setLevel(logging.CRITICAL)  # the AMQP stand-in's peer resets at shutdown
    _load_settings_file(args.settings)

    from shared.core.errors import ConfigurationError

    try:
        if args.command == "demo":
            from .demo import DemoPrinter, run_demo

            first, second = asyncio.run(run_demo(args.users, args.seed, DemoPrinter()))
            print(f"Full log of the run: {DEMO_LOG}")
            return 0 if second.salesforce_writes == 0 else 1
        if args.command == "check":
            from .operations import check

            results = asyncio.run(_with_container(check))
            for r in results:
                print(f"{'OK  ' if r.ok else 'FAIL'} {r.step}: {r.detail}")
            return 0 if all(r.ok for r in results) else 1
        if args.command == "relink":
            from shared.core.errors import ProvisioningError

            from .operations import relink as relink_user

            try:
                link = asyncio.run(_with_container(
                    lambda c: relink_user(c, args.entra_id, args.salesforce_id, force=args.force)))
            except ProvisioningError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            print(f"linked entra={link.entra_id} to sf={link.salesforce_id}; the next cycle (or `sync`) reconciles it")
            return 0
        if args.command == "unlink":
            from shared.core.errors import ProvisioningError

            from .operations import unlink as unlink_user

            try:
                removed = asyncio.run(_with_container(lambda c: unlink_user(c, args.entra_id)))
            except ProvisioningError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            if removed is None:
                print(f"entra={args.entra_id.lower()} had no link; nothing to do")
            else:
                print(f"unlinked entra={removed.entra_id} from sf={removed.salesforce_id}; the Salesforce user is "
                      "unchanged, and the next cycle (or `sync`) matches the Entra user afresh")
            return 0
        if args.command == "import-profiles":
            from shared.core.errors import ProvisioningError

            from .profile_import import print_import

            try:
                result = asyncio.run(_with_container(lambda c: c.profile_import.run(dry_run=args.dry_run)))
            except ProvisioningError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            print_import(result, dry_run=args.dry_run, as_json=args.json)
            return 0
        if args.command in ("held", "release-held", "reject-held"):
            from shared.services.safety import UnknownHold

            try:
                holds = asyncio.run(_with_container(lambda container: safety_commands.run(container, args)))
            except UnknownHold as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            safety_commands.print_holds(holds, args.command, as_json=args.json)
            return 0
        if args.command in ("quarantine", "escrow"):
            return asyncio.run(_with_container(lambda container: quarantine_commands.run(container, args)))
        from .operations import plan as plan_users, sync as sync_users

        if args.command == "plan":
            results, holds, limit = asyncio.run(_with_container(plan_users))
            _results_table(results, "Planned changes", as_json=args.json, holds=holds, limit=limit)
            return 0
        results = asyncio.run(_with_container(sync_users))
        _results_table(results, "Applied changes", as_json=args.json)
        return 1 if args.command == "sync" and any(r.error for r in results) else 0
    except ConfigurationError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
