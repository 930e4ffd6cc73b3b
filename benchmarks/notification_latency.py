"""How long a change in Entra takes to reach Salesforce through change notifications (a command, not a test).

Starts the local stack, provisions the tenant with one detect cycle, lets the manage_subscriptions timer
create the `users` subscription, then changes N provisioned users one at a time and measures, for each,
the time from the tenant change to the Salesforce emulator holding the new value, through: the Graph
emulator's notification → the graph_notifications function (via the loopback HTTP trigger host) →
the Service Bus stand-in → the queue-trigger host → provision_user. The detect timer does not run.

    .venv/bin/python -m benchmarks.notification_latency [--users 200] [--changes 30] [--max-concurrent-calls N] [--json]

The queue-trigger stand-in receives with azure-servicebus, whose batch receive (max_message_count > 1)
waits 0.2 s for more messages after the first; `--max-concurrent-calls 1` shows the pipeline without it.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from cli.demo import max_concurrent_calls
from cli.local_stack import QUEUE, LocalStack
from emulators.functions_host import QueueTriggerHost

from .webhook_stack import latency_figures, provisioned_webhook_stack, quiet_logging

TIMEOUT_SECONDS = 30.0
POLL_SECONDS = 0.002


async def measure(users: int, changes: int, concurrency: int) -> dict[str, Any]:
    async with provisioned_webhook_stack(users) as running:
        await running.subscribe()
        return await _change_users(running.stack, running.functions, changes, concurrency)


async def _change_users(stack: LocalStack, functions: dict[str, Any], changes: int, concurrency: int) -> dict[str, Any]:
    from shared.bootstrap import current_container

    state = current_container().state
    targets = [(u, state.get_link(u).salesforce_id) for u in sorted(stack.demo.expected_roles)
               if state.get_link(u) is not None and stack.tenant.find_user(u)][:changes]
    if len(targets) < changes:
        raise SystemExit(f"only {len(targets)} provisioned users to change; use more --users")
    delta_calls = stack.graph.calls["users.delta"]
    host = QueueTriggerHost(stack.env["ServiceBusConnection"], QUEUE, functions["provision_user"],
                            max_concurrent_calls=concurrency)
    running = asyncio.create_task(host.run())
    samples: list[float] = []
    missed = 0
    try:
        for i, (user_id, salesforce_id) in enumerate(targets):
            value = f"Latency-{i}"
            started = time.perf_counter()
            stack.tenant.update_user(user_id, surname=value)
            while stack.org.get_user(salesforce_id)["LastName"] != value:
                if time.perf_counter() - started > TIMEOUT_SECONDS:
                    missed += 1
                    break
                await asyncio.sleep(POLL_SECONDS)
            else:
                samples.append(time.perf_counter() - started)
    finally:
        host.stop()
        await running
    if stack.graph.calls["users.delta"] != delta_calls:
        raise SystemExit("the detect timer ran during the measurement: the figures would not be notification latency")
    return {**_summary(samples, missed), "tenant_users": len(stack.tenant.user_ids), "max_concurrent_calls": concurrency}


def _summary(samples: list[float], missed: int) -> dict[str, Any]:
    return {"changes": len(samples) + missed, "missed": missed, **latency_figures(samples, quantiles=(50, 95))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200, help="size of the seeded tenant (default 200)")
    parser.add_argument("--changes", type=int, default=30, help="users to change one at a time (default 30)")
    parser.add_argument("--max-concurrent-calls", type=int, default=max_concurrent_calls(),
                        help="the queue trigger's concurrency (default: host.json's maxConcurrentCalls)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.changes < 1 or args.users < 40 or args.max_concurrent_calls < 1:
        parser.error("--changes and --max-concurrent-calls must be at least 1, --users at least 40")
    quiet_logging()
    figures = asyncio.run(measure(args.users, args.changes, args.max_concurrent_calls))
    if args.json:
        print(json.dumps(figures))
        return
    print(f"{figures['changes']} changes in a {figures['tenant_users']}-user tenant, tenant change → Salesforce "
          f"(notification → webhook → Service Bus → provision, {figures['max_concurrent_calls']} concurrent calls):")
    print(f"  p50 {figures['p50_ms']} ms   p95 {figures['p95_ms']} ms   max {figures['max_ms']} ms   "
          f"missed (>{TIMEOUT_SECONDS:.0f} s) {figures['missed']}")


if __name__ == "__main__":
    main()
