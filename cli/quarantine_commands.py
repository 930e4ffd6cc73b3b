"""quarantine [--clear] and escrow: see (and lift) the quarantine, list the users waiting for a retry."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.bootstrap import Container


def add_parsers(sub: argparse._SubParsersAction) -> None:
    quarantine = sub.add_parser("quarantine", help="is provisioning quarantined, and why; --clear lifts it")
    quarantine.add_argument("--clear", action="store_true", help="lift the quarantine now (the cause is fixed)")
    quarantine.add_argument("--json", action="store_true")
    escrow = sub.add_parser("escrow", help="users that failed for good and wait for their next automatic retry")
    escrow.add_argument("--json", action="store_true")


async def run(container: Container, args: argparse.Namespace) -> int:
    if args.command == "escrow":
        entries = container.escrow.entries()
        if args.json:
            print(json.dumps([asdict(e) for e in entries], indent=2))
            return 0
        for e in entries:
            print(f"{e.entra_id}  {e.code:<28} failures {e.failures}  first {e.first_failed_at}  "
                  f"next retry {e.next_retry_at or 'none (schedule over)'}")
        print(f"{len(entries)} user(s) in escrow")
        return 0
    quarantine = container.quarantine
    status = await quarantine.clear() if args.clear else quarantine.status()
    if args.json:
        print(json.dumps(asdict(status) if status else None, indent=2))
        return 0
    if status is None:
        print("not quarantined")
    elif args.clear and status.active:
        print(f"quarantine lifted (it was: {status.reason}, {status.error_code}, since {status.since})")
    elif status.active:
        print(f"QUARANTINED since {status.since}: {status.detail}")
        print(f"reason {status.reason}, error code {status.error_code or '-'}, failed probes {status.probes}, "
              f"next probe not before {status.probe_at}")
        print("lift it once the cause is fixed: python -m cli quarantine --clear")
    else:
        print(f"lifted at {status.lifted_at} by {status.lifted_by}; its email is not sent yet")
    return 0
