"""held, release-held, reject-held: the admin's side of the deletion threshold."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Sequence

from shared.core.safety import HeldDeactivation

if TYPE_CHECKING:
    from shared.bootstrap import Container


def add_parsers(sub: argparse._SubParsersAction) -> None:
    held = sub.add_parser("held", help="list deactivations held by the deletion threshold")
    held.add_argument("--json", action="store_true")
    for name, verb in (("release-held", "apply"), ("reject-held", "drop, keeping the users active,")):
        command = sub.add_parser(name, help=f"{verb} held deactivations")
        which = command.add_mutually_exclusive_group(required=True)
        which.add_argument("--all", action="store_true", help="every deactivation still held")
        which.add_argument("--entra-id", action="append", metavar="ID", help="a held user's object id (repeatable)")
        command.add_argument("--json", action="store_true")


async def run(container: Container, args: argparse.Namespace) -> list[HeldDeactivation]:
    guard = container.safety
    ids = None if getattr(args, "all", False) else getattr(args, "entra_id", None)
    if args.command == "held":
        return guard.held()
    if args.command == "release-held":
        return await guard.release(ids)
    return guard.reject(ids)


def print_holds(holds: Sequence[HeldDeactivation], command: str, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps([asdict(h) for h in holds], indent=2))
        return
    done = {"held": "held or decided", "release-held": "released (users enqueued)", "reject-held": "rejected"}[command]
    for h in holds:
        print(f"{h.entra_id}  sf={h.salesforce_id}  {h.status:<8}  held {h.held_at}  {h.reason}")
    print(f"{len(holds)} deactivation(s) {done}")
