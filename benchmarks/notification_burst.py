"""A burst of Graph change notifications at the webhook, then the queue drained (a command, not a test).

Graph drops a webhook that answers slower than 3 s (reference graph.md §3), so this measures how the
graph_notifications function, served over real HTTP by the loopback HTTP trigger host, answers a burst,
and checks what the burst leaves behind:

1. the seeded tenant is provisioned by one detect cycle; every provisioned user gets one change in Entra
   (a new surname); then the manage_subscriptions timer creates the `users` subscription;
2. a separate process (Graph is another machine) POSTs `--notifications` change notifications in Graph's
   shape for that subscription, `--concurrency` requests at a time: single notifications and batches of
   up to 100 in `{"value": [...]}`, several for the same user, ~1 in 10 for users out of scope, a few
   posts re-delivered verbatim as Graph does after a failure; a post answered with anything but 2xx
   (or not within Graph's 3 s timeout) is retried, as Graph retries;
3. the Service Bus stand-in is drained through the queue-trigger host into provision_user;
4. checked: every changed user holds its new value in Salesforce, written exactly once; no other user
   written; every notified user was queued; nothing dead-lettered.

    .venv/bin/python -m benchmarks.notification_burst [--notifications 10000] [--users 2000] [--concurrency 32]
                                                      [--servicebus-delay SECONDS] [--provision-while-firing] [--json]

`--servicebus-delay` makes the Service Bus stand-in accept each send that late during the burst: the
webhook should still answer within Graph's 3 s (503 past its 2 s enqueue deadline, which Graph retries).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

import aiohttp

from cli.demo import drain_queue, provision_trigger
from cli.local_stack import QUEUE
from emulators.functions_host import Invocation
from emulators.graph.subscriptions import change_notification

from .webhook_stack import WebhookStack, latency_figures, provisioned_webhook_stack, quiet_logging

GRAPH_TIMEOUT_SECONDS = 3.0  # Graph's HTTP timeout for a notification POST
SLOW_SECONDS = 2.9  # a response slower than this counts as slow towards Graph's endpoint throttling
DELIVERY_ATTEMPTS = 4
RETRY_DELAY_SECONDS = 0.5  # Graph waits minutes; the burst does not
OUT_OF_SCOPE_SHARE = 0.1
REPLAY_SHARE = 0.01


@dataclass
class BurstPlan:
    """The posts to send and what they should cause."""

    posts: list[bytes]
    changed: dict[str, tuple[str, str]]  # Entra id → (Salesforce id, the new LastName)
    out_of_scope: set[str]
    notifications: int = 0
    replays: int = 0


@dataclass
class Delivery:
    """One post as Graph saw it: the status and time of each attempt."""

    statuses: list[int | None] = field(default_factory=list)  # None: timed out or failed to connect
    seconds: list[float] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return bool(self.statuses) and self.statuses[-1] is not None and 200 <= self.statuses[-1] < 300


async def plan_burst(running: WebhookStack, notifications: int, seed: int = 11) -> BurstPlan:
    """Change the users to be notified in Entra, then subscribe (so the emulator itself does not notify
    those changes), then build the posts."""
    from shared.bootstrap import current_container

    stack, state, rng = running.stack, current_container().state, random.Random(seed)
    linked = {u: link.salesforce_id for u in sorted(stack.demo.expected_roles)
              if (link := state.get_link(u)) is not None and stack.tenant.find_user(u)}
    outside = sorted(u for u in stack.tenant.user_ids if u not in stack.demo.expected_roles
                     and stack.tenant.find_user(u) and state.get_link(u) is None)
    if not linked or not outside:
        raise SystemExit("the tenant has no provisioned or no out-of-scope users; use more --users")
    # Every notified user is notified at least twice when the burst is big enough for that.
    in_scope = rng.sample(sorted(linked), min(len(linked), max(1, int(notifications * (1 - OUT_OF_SCOPE_SHARE)) // 2)))
    out_of_scope = rng.sample(outside, min(len(outside), max(1, int(notifications * OUT_OF_SCOPE_SHARE) // 2)))
    changed: dict[str, tuple[str, str]] = {}
    for i, user_id in enumerate(in_scope):
        changed[user_id] = (linked[user_id], f"Burst{i}")
        stack.tenant.update_user(user_id, surname=f"Burst{i}")
    subscription = await running.subscribe()
    tenant_id = stack.graph.subscriptions.tenant_id
    users = in_scope + out_of_scope
    extra = max(0, notifications - len(users))
    users += rng.choices(in_scope, k=extra - int(extra * OUT_OF_SCOPE_SHARE)) + rng.choices(out_of_scope, k=int(extra * OUT_OF_SCOPE_SHARE))
    rng.shuffle(users)
    items = [change_notification(subscription, tenant_id, u) for u in users[:notifications]]
    plan = BurstPlan([], changed, set(out_of_scope))
    while plan.notifications < len(items):
        if plan.posts and rng.random() < REPLAY_SHARE:  # Graph re-delivering a post it thinks failed
            replay = rng.choice(plan.posts)
            plan.posts.append(replay)
            plan.replays += 1
            continue
        size = _post_size(rng)
        chunk = items[plan.notifications:plan.notifications + size]
        plan.posts.append(json.dumps({"value": chunk}).encode())
        plan.notifications += len(chunk)
    return plan


def _post_size(rng: random.Random) -> int:
    """Half the posts carry one notification, the rest a batch of 2-10 or, less often, 11-100."""
    roll = rng.random()
    return 1 if roll < 0.5 else rng.randint(2, 10) if roll < 0.85 else rng.randint(11, 100)


async def fire(url: str, posts: list[bytes], concurrency: int) -> list[Delivery]:
    """POST every body `concurrency` at a time with Graph's 3 s timeout, retrying what was not accepted."""
    deliveries = [Delivery() for _ in posts]
    pending: asyncio.Queue[int] = asyncio.Queue()
    for index in range(len(posts)):
        pending.put_nowait(index)
    timeout = aiohttp.ClientTimeout(total=GRAPH_TIMEOUT_SECONDS)
    headers = {"Content-Type": "application/json"}

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency), timeout=timeout) as http:
        async def deliver(index: int) -> None:
            delivery = deliveries[index]
            for attempt in range(DELIVERY_ATTEMPTS):
                if attempt:
                    await asyncio.sleep(RETRY_DELAY_SECONDS * 2 ** (attempt - 1))
                started = time.perf_counter()
                try:
                    async with http.post(url, data=posts[index], headers=headers) as response:
                        await response.read()
                        status: int | None = response.status
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    status = None
                delivery.seconds.append(time.perf_counter() - started)
                delivery.statuses.append(status)
                if delivery.accepted:
                    return

        async def worker() -> None:
            while not pending.empty():
                await deliver(pending.get_nowait())

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return deliveries


def _fire_in_this_process(url: str, posts: list[bytes], concurrency: int) -> list[Delivery]:
    return asyncio.run(fire(url, posts, concurrency))


async def fire_from_another_process(url: str, posts: list[bytes], concurrency: int) -> list[Delivery]:
    """Graph is another machine: the sender's own work must not slow the webhook's event loop."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return await asyncio.get_running_loop().run_in_executor(pool, _fire_in_this_process, url, posts, concurrency)


async def run_burst(running: WebhookStack, notifications: int, concurrency: int, seed: int = 11,
                    servicebus_delay: float = 0.0, provision_while_firing: bool = False) -> dict[str, Any]:
    """Plan, fire (with Service Bus accepting each send `servicebus_delay` seconds late, and the queue
    trigger already running when `provision_while_firing`), drain and check; returns the figures."""
    stack = running.stack
    plan = await plan_burst(running, notifications, seed)
    org, bus = stack.org, stack.servicebus
    writes_before, write_calls_before, calls_before = org.writes_by_user(), org.calls.writes, org.calls.total
    queued_before = len(bus.messages_seen(QUEUE))
    duplicates_before = bus.duplicates_dropped(QUEUE)
    dead_before = len(bus.messages_seen(QUEUE, dead_letter=True))
    held_before = bus.message_count(QUEUE)  # users parked for licences by the first sync

    trigger = provision_trigger(stack)
    provisioning = asyncio.create_task(trigger.run()) if provision_while_firing else None
    invocations: list[Invocation] = []
    started = time.perf_counter()
    bus.slow_sends(servicebus_delay)
    try:
        deliveries = await fire_from_another_process(running.http.url_for("graph_notifications"), plan.posts, concurrency)
    finally:
        bus.slow_sends(0)
        if provisioning is not None:
            trigger.stop()
            invocations = await provisioning
    burst_seconds = time.perf_counter() - started
    await asyncio.sleep(servicebus_delay)  # sends the webhook gave up waiting for land meanwhile
    queued = [json.loads(m.body or b"") for m in bus.messages_seen(QUEUE)[queued_before:]]

    started = time.perf_counter()
    invocations += await drain_queue(stack)
    drain_seconds = time.perf_counter() - started

    writes = org.writes_by_user()
    writes.subtract(writes_before)
    notified = set(plan.changed) | plan.out_of_scope
    queued_users = {q["entraId"] for q in queued}
    unreconciled = [u for u, (sf_id, last_name) in plan.changed.items()
                    if (org.get_user(sf_id) or {}).get("LastName") != last_name or writes[sf_id] < 1]
    changed_ids = {sf_id for sf_id, _ in plan.changed.values()}
    samples = [s for d in deliveries for s in d.seconds]
    statuses = Counter(str(s) for d in deliveries for s in d.statuses)
    # A timed-out attempt ends at Graph's 3 s, so its time is a lower bound: count it by its outcome.
    over_3s = sum(1 for d in deliveries for s, status in zip(d.seconds, d.statuses)
                  if status is None or s > GRAPH_TIMEOUT_SECONDS)
    return {
        "notifications": plan.notifications,
        "posts": len(plan.posts),
        "replayed_posts": plan.replays,
        "concurrency": concurrency,
        "servicebus_delay_seconds": servicebus_delay,
        "provision_while_firing": provision_while_firing,
        "notified_users": len(notified),
        "changed_users": len(plan.changed),
        "out_of_scope_users": len(plan.out_of_scope),
        "attempts": len(samples),
        "statuses": dict(statuses),
        **latency_figures(samples),
        "over_3s": over_3s,
        "over_3s_share": round(over_3s / len(samples), 4) if samples else 0.0,
        "slow_for_graph": sum(1 for s in samples if s > SLOW_SECONDS),
        "posts_not_accepted": sum(1 for d in deliveries if not d.accepted),
        "burst_seconds": round(burst_seconds, 2),
        "queued_messages": len(queued),
        "queued_users": len(queued_users),
        "duplicates_dropped_by_service_bus": bus.duplicates_dropped(QUEUE) - duplicates_before,
        "drain_seconds": round(drain_seconds, 2),
        "invocations": len(invocations),
        "invocations_failed": sum(1 for i in invocations if i.outcome != "completed"),
        "salesforce_calls": org.calls.total - calls_before,
        "salesforce_write_calls": org.calls.writes - write_calls_before,
        "salesforce_record_writes": sum(n for n in writes.values() if n > 0),
        "reconciled": len(plan.changed) - len(unreconciled),
        "duplicate_writes": sum(n - 1 for sf_id, n in writes.items() if sf_id in changed_ids and n > 1),
        "unexpected_writes": sum(n for sf_id, n in writes.items() if sf_id not in changed_ids and n > 0),
        "lost": len(unreconciled) + len(notified - queued_users),
        "dead_lettered": len(bus.messages_seen(QUEUE, dead_letter=True)) - dead_before,
        "queue_left": bus.message_count(QUEUE) - held_before,
    }


async def measure(users: int, notifications: int, concurrency: int, servicebus_delay: float,
                  provision_while_firing: bool) -> dict[str, Any]:
    async with provisioned_webhook_stack(users) as running:
        figures = await run_burst(running, notifications, concurrency, servicebus_delay=servicebus_delay,
                                  provision_while_firing=provision_while_firing)
    return {**figures, "tenant_users": users}


def _print_table(f: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    slow = f", Service Bus accepting sends {f['servicebus_delay_seconds']:g} s late" if f["servicebus_delay_seconds"] else ""
    slow += ", provisioning meanwhile" if f["provision_while_firing"] else ""
    table = Table(title=f"{f['notifications']:,} change notifications in {f['posts']:,} posts "
                        f"({f['concurrency']} at a time), {f['tenant_users']:,}-user tenant{slow}",
                  show_header=False, title_justify="left")
    rows = [
        ("webhook response p50 / p95 / p99 / max", f"{f['p50_ms']} / {f['p95_ms']} / {f['p99_ms']} / {f['max_ms']} ms"),
        ("responses over 3 s (Graph's timeout)", f"{f['over_3s']} of {f['attempts']} ({f['over_3s_share']:.2%})"),
        ("responses over 2.9 s (slow, for Graph's throttling)", f["slow_for_graph"]),
        ("answers by status", ", ".join(f"{k}: {v}" for k, v in sorted(f["statuses"].items()))),
        ("posts never accepted", f["posts_not_accepted"]),
        ("burst duration", f"{f['burst_seconds']} s"),
        ("users notified (changed / out of scope)", f"{f['notified_users']} ({f['changed_users']} / {f['out_of_scope_users']})"),
        ("messages queued (users)", f"{f['queued_messages']} ({f['queued_users']})"),
        ("re-deliveries dropped by duplicate detection", f["duplicates_dropped_by_service_bus"]),
        ("drain after the burst (invocations, failed)", f"{f['drain_seconds']} s ({f['invocations']}, {f['invocations_failed']})"),
        ("Salesforce calls (write calls, records written)", f"{f['salesforce_calls']} ({f['salesforce_write_calls']}, {f['salesforce_record_writes']})"),
        ("changed users reconciled", f"{f['reconciled']} of {f['changed_users']}"),
        ("duplicate writes", f["duplicate_writes"]),
        ("writes to users that did not change", f["unexpected_writes"]),
        ("lost", f["lost"]),
        ("dead-lettered", f["dead_lettered"]),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    Console().print(table)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notifications", type=int, default=10_000, help="notifications in the burst (default 10000)")
    parser.add_argument("--users", type=int, default=2000, help="size of the seeded tenant (default 2000)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight at once (default 32)")
    parser.add_argument("--servicebus-delay", type=float, default=0.0, metavar="SECONDS",
                        help="Service Bus accepts each send this late during the burst (default 0)")
    parser.add_argument("--provision-while-firing", action="store_true",
                        help="run the queue trigger during the burst, in the webhook's process, as one Function App "
                             "instance does (default: drain after the burst)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.notifications < 1 or args.concurrency < 1 or args.users < 40 or args.servicebus_delay < 0:
        parser.error("--notifications and --concurrency must be at least 1, --users at least 40, "
                     "--servicebus-delay not negative")
    quiet_logging()
    figures = asyncio.run(measure(args.users, args.notifications, args.concurrency, args.servicebus_delay,
                                  args.provision_while_firing))
    print(json.dumps(figures)) if args.json else _print_table(figures)


if __name__ == "__main__":
    main()
