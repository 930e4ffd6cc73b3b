"""Benchmark: provision a large seeded tenant into the emulated org through the real pipeline (timer →
Service Bus stand-in → queue-trigger host → provision function), with realistic per-call latency, then
run an unchanged second cycle. Prints wall time, Salesforce calls per user, Graph calls and peak memory.

    .venv/bin/python -m benchmarks.provisioning --users 10000 [--json]

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

from cli.demo import CycleFigures, run_cycle
from cli.local_stack import environment, local_stack


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
    )


async def benchmark(users: int, salesforce_latency: float, graph_latency: float) -> dict:
    from shared.bootstrap import current_container

    with local_stack(users=users) as stack, environment(stack.env):
        stack.org.faults.latency = salesforce_latency
        stack.graph.faults.latency = graph_latency
        in_scope = len(stack.demo.expected_roles)
        try:
            started = time.monotonic()
            first = await run_cycle(stack)
            second = await run_cycle(stack)
        finally:
            await current_container().aclose()
        return {
            "users_in_tenant": users,
            "users_assigned": in_scope,
            "salesforce_latency_s": salesforce_latency,
            "graph_latency_s": graph_latency,
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
    parser.add_argument("--json", action="store_true", help="print the figures as JSON only")
    args = parser.parse_args()
    quiet = logging.StreamHandler()
    quiet.setLevel(logging.CRITICAL)  # the seeded tenant fails users on purpose; only the figures matter
    logging.basicConfig(level=logging.INFO, handlers=[quiet])
    figures = asyncio.run(benchmark(args.users, args.salesforce_latency, args.graph_latency))
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    for cycle in ("first_sync", "repeat_sync"):
        f = figures[cycle]
        print(f"{cycle}: {f['users_processed']} users in {f['seconds']} s; created {f['created']}, updated "
              f"{f['updated']}, failed {f['failed']}; Salesforce calls {f['salesforce_calls']} "
              f"({f['salesforce_calls_per_user']} per assigned user, {f['salesforce_writes']} writes); "
              f"Graph calls {f['graph_calls']}")
    print(f"tenant {figures['users_in_tenant']} users ({figures['users_assigned']} assigned); "
          f"peak RSS {figures['peak_rss_mib']} MiB; total {figures['total_seconds']} s")


if __name__ == "__main__":
    main()
