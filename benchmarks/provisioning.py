"""Benchmark: provision a large seeded tenant into the emulated org through the real pipeline (timer →
Service Bus stand-in → queue-trigger host → provision function), with realistic per-call latency, then
run an unchanged second cycle. Prints wall time, Salesforce calls per user, Graph calls and peak memory.

    .venv/bin/python -m benchmarks.provisioning --users 10000 [--permission-sets] [--json]

--permission-sets maps three of the demo tenant's groups to permission sets and a permission set group
(nested members included), so the figures include assigning them.

A command, not a test: figures depend on the machine. Peak memory is the whole process's (the
emulators run in it too), so it is an upper bound for the app."""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from cli.demo import CycleFigures, run_cycle
from cli.local_stack import LocalStack, app_settings, local_stack

DEFAULT_MAPPING = Path(__file__).resolve().parents[1] / "config" / "mapping.default.toml"
# demo group → (permission sets, permission set groups)
PERMISSION_SET_GROUPS = {"Sales Team": (["Sales_Ops"], []), "Support Team": ([], ["Support_Agents"]),
                         "All Staff": (["Reports_Viewer"], [])}


@dataclass
class CycleResult:
    users_processed: int
    created: int
    updated: int
    failed: int
    salesforce_calls: int
    salesforce_writes: int
    salesforce_calls_per_user: float
    graph_calls: int
    seconds: float
    permission_sets_added: int


def _result(c: CycleFigures, tenant_users_in_scope: int) -> CycleResult:
    return CycleResult(
        users_processed=c.summary.users,
        created=c.summary.outcome["created"],
        updated=c.summary.outcome["updated"],
        failed=c.summary.outcome["failed"],
        salesforce_calls=c.salesforce_calls,
        salesforce_writes=c.salesforce_writes,
        salesforce_calls_per_user=round(c.salesforce_calls / max(1, tenant_users_in_scope), 4),
        graph_calls=c.graph_calls,
        seconds=round(c.seconds, 1),
        permission_sets_added=c.summary.permission_set_assignments["added"],
    )


def _permission_set_mapping(stack: LocalStack) -> dict[str, str]:
    """Create the permission sets in the org and a mapping file granting them; the settings to use it."""
    entries = []
    for group, (sets, groups) in PERMISSION_SET_GROUPS.items():
        for name in sets:
            stack.org.add_permission_set(name)
        for name in groups:
            stack.org.add_permission_set_group(name)
        entries.append(f'[[permission_sets.group]]\ngroup_id = "{stack.demo.group_ids[group]}"\nname = "{group}"\n'
                       f"permission_sets = {json.dumps(sets)}\npermission_set_groups = {json.dumps(groups)}\n")
    path = stack.workdir / "mapping.toml"
    path.write_text(DEFAULT_MAPPING.read_text(encoding="utf-8") + "\n" + "\n".join(entries), encoding="utf-8")
    return {"MAPPING_FILE": str(path)}


async def benchmark(users: int, salesforce_latency: float, graph_latency: float, permission_sets: bool = False) -> dict:
    with local_stack(users=users) as stack:
        stack.org.faults.latency = salesforce_latency
        stack.graph.faults.latency = graph_latency
        in_scope = len(stack.demo.expected_roles)
        async with app_settings(stack, _permission_set_mapping(stack) if permission_sets else None):
            started = time.monotonic()
            first = await run_cycle(stack)
            second = await run_cycle(stack)
        return {
            "users_in_tenant": users,
            "users_assigned": in_scope,
            "salesforce_latency_s": salesforce_latency,
            "graph_latency_s": graph_latency,
            "permission_sets_mapped": permission_sets,
            "first_sync": asdict(_result(first, in_scope)),
            "repeat_sync": asdict(_result(second, in_scope)),
            "total_seconds": round(time.monotonic() - started, 1),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.provisioning", description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--salesforce-latency", type=float, default=0.150, help="seconds added to every Salesforce call")
    parser.add_argument("--graph-latency", type=float, default=0.050, help="seconds added to every Graph call")
    parser.add_argument("--permission-sets", action="store_true", help="grant permission sets from three demo groups")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON only")
    args = parser.parse_args()
    quiet = logging.StreamHandler()
    quiet.setLevel(logging.CRITICAL)  # the seeded tenant fails users on purpose; only the figures matter
    logging.basicConfig(level=logging.INFO, handlers=[quiet])
    figures = asyncio.run(benchmark(args.users, args.salesforce_latency, args.graph_latency, args.permission_sets))
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    for cycle in ("first_sync", "repeat_sync"):
        f = figures[cycle]
        print(f"{cycle}: {f['users_processed']} users in {f['seconds']} s; created {f['created']}, updated "
              f"{f['updated']}, failed {f['failed']}; Salesforce calls {f['salesforce_calls']} "
              f"({f['salesforce_calls_per_user']} per assigned user, {f['salesforce_writes']} writes); "
              f"Graph calls {f['graph_calls']}; permission set assignments added {f['permission_sets_added']}")
    print(f"tenant {figures['users_in_tenant']} users ({figures['users_assigned']} assigned); "
          f"peak RSS {figures['peak_rss_mib']} MiB; total {figures['total_seconds']} s")


if __name__ == "__main__":
    main()
