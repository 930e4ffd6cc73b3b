"""The local demo: the seeded tenant provisioned into the emulated org through the real function
handlers, timer → queue → provision → dead-letter → email, then an unchanged second cycle."""
from __future__ import annotations

import json
import time
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable

from azure.functions.timer import TimerRequest

from emulators.functions_host import Invocation, QueueTriggerHost, registered_functions
from emulators.graph.demo_tenant import apply_demo_changes

from .local_stack import QUEUE, LocalStack, app_settings, local_stack
from .provisioning_log import ProvisioningLog, RunSummary

HOST_JSON = Path(__file__).resolve().parent.parent / "host.json"
IDLE_SECONDS = 1.5  # a queue quiet this long counts as drained
# Retries due later than this (a user parked for want of a licence: hours) are left for a later cycle.
RETRY_HORIZON_SECONDS = 120.0


@dataclass
class CycleFigures:
    summary: RunSummary
    salesforce_calls: int
    salesforce_writes: int
    graph_calls: int
    emails: int
    dead_lettered: int
    seconds: float
    by_kind: dict[str, Any] = field(default_factory=dict)


def max_concurrent_calls() -> int:
    """What host.json gives the Service Bus trigger, so the local run batches as Azure would."""
    return json.loads(HOST_JSON.read_text())["extensions"]["serviceBus"]["maxConcurrentCalls"]


async def run_cycle(stack: LocalStack, on_progress: Callable[[int], None] | None = None,
                    idle_seconds: float = IDLE_SECONDS) -> CycleFigures:
    """One detect cycle, the queue drained (retries due within RETRY_HORIZON_SECONDS included), then the
    dead letters."""
    import function_app  # indexing the app is what the worker does at start

    functions = registered_functions(function_app.app)
    org, graph = stack.org, stack.graph
    sf_before, sf_writes_before = org.calls.total, org.calls.writes
    from shared.bootstrap import current_container

    app_graph_calls = current_container().graph_calls  # HTTP requests the app sent ($batch counts once)
    graph_before = sum(app_graph_calls.values())
    mails_before = len(graph.outbox)
    dlq_before = len(stack.servicebus.messages_seen(QUEUE, dead_letter=True))
    started = time.monotonic()
    done = 0

    def progress(_: object) -> None:
        nonlocal done
        done += 1
        if on_progress:
            on_progress(done)

    with ProvisioningLog() as plog:
        await functions["detect_changes"](TimerRequest(past_due=False))
        await drain_queue(stack, progress, idle_seconds)
        if stack.servicebus.dead_letter_count(QUEUE):  # else the dead-letter trigger would not fire
            notify = QueueTriggerHost(stack.env["ServiceBusConnection"], QUEUE, functions["notify_failures"],
                                      dead_letter=True, many=True, max_concurrent_calls=500)
            await notify.run(idle_seconds=idle_seconds)
    return CycleFigures(
        summary=plog.summary(),
        salesforce_calls=org.calls.total - sf_before,
        salesforce_writes=org.calls.writes - sf_writes_before,
        graph_calls=sum(app_graph_calls.values()) - graph_before,
        emails=len(graph.outbox) - mails_before,
        dead_lettered=len(stack.servicebus.messages_seen(QUEUE, dead_letter=True)) - dlq_before,
        seconds=time.monotonic() - started,
        by_kind=dict(org.calls.snapshot()["by_kind"]),
    )


def provision_trigger(stack: LocalStack, on_invocation: Callable[[Invocation], None] | None = None) -> QueueTriggerHost:
    """provision_user on the queue trigger, with host.json's concurrency."""
    import function_app

    return QueueTriggerHost(stack.env["ServiceBusConnection"], QUEUE, registered_functions(function_app.app)["provision_user"],
                            on_invocation=on_invocation, max_concurrent_calls=max_concurrent_calls())


async def drain_queue(stack: LocalStack, on_invocation: Callable[[Invocation], None] | None = None,
                      idle_seconds: float = IDLE_SECONDS) -> list[Invocation]:
    """Run provision_user on the queue trigger (host.json's concurrency) until the queue is empty and no
    retry is due within RETRY_HORIZON_SECONDS; returns every invocation."""
    provision = provision_trigger(stack, on_invocation)
    invocations: list[Invocation] = []
    while True:
        invocations += await provision.run(idle_seconds=idle_seconds)
        due_soon = stack.servicebus.scheduled_count(QUEUE, within_seconds=RETRY_HORIZON_SECONDS)
        if not due_soon and not stack.servicebus.active_count(QUEUE):
            return invocations


async def run_demo(users: int, seed: int, printer: "DemoPrinter") -> tuple[CycleFigures, CycleFigures]:
    with local_stack(users=users, seed=seed) as stack:
        async with app_settings(stack):
            first, second, _ = await demo_cycles(stack, printer)
    return first, second


async def demo_cycles(stack: LocalStack, printer: "DemoPrinter",
                      idle_seconds: float = IDLE_SECONDS) -> tuple[CycleFigures, CycleFigures, CycleFigures]:
    """The demo's three cycles on a running stack whose settings are in the environment: the initial
    sync, an unchanged one, and one after a day of changes in Entra."""
    printer.tenant(stack)
    first = await printer.with_progress("first sync", lambda cb: run_cycle(stack, cb, idle_seconds))
    printer.cycle("First sync (initial cycle)", first)
    second = await printer.with_progress("second sync", lambda cb: run_cycle(stack, cb, idle_seconds))
    printer.cycle("Second sync (nothing changed in Entra)", second)
    changes = apply_demo_changes(stack.tenant, stack.demo)
    printer.console.print(f"[bold]A day of changes in Entra:[/] {changes.describe()}")
    third = await printer.with_progress("incremental sync", lambda cb: run_cycle(stack, cb, idle_seconds))
    printer.cycle("Incremental sync (after the day's changes)", third)
    printer.emails(stack)
    return first, second, third


class DemoPrinter:
    """Terminal output with rich: a progress bar while messages drain, tables for the summaries."""

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console

        self.console = console or Console()

    def tenant(self, stack: LocalStack) -> None:
        self.console.print(f"[bold]Seeded Entra tenant:[/] {stack.demo.describe()}")
        self.console.print(f"Graph emulator {stack.graph.base_url}, Salesforce emulator {stack.salesforce.instance_url}, "
                           f"Service Bus stand-in port {stack.servicebus.port}")

    async def with_progress(self, label: str, run: Callable[[Callable[[int], None]], Any]) -> Any:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed} messages"),
                      TimeElapsedColumn(), console=self.console, transient=True) as progress:
            task = progress.add_task(label, total=None)
            return await run(lambda n: progress.update(task, completed=n))

    def cycle(self, title: str, c: CycleFigures) -> None:
        from rich.table import Table

        table = Table(title=title, show_header=False, title_justify="left")
        s = c.summary
        rows = [
            ("users processed", s.users),
            ("created", s.outcome["created"]),
            ("updated", s.outcome["updated"]),
            ("deactivated", s.outcome["deactivated"]),
            ("reactivated", s.outcome["reactivated"]),
            ("skipped (nothing to do / out of scope)", s.outcome["skipped"]),
            ("failed", s.outcome["failed"]),
        ]
        rows += [(f"  failed: {code}", n) for code, n in s.failures.most_common()]
        if s.permission_set_assignments:
            granted = s.permission_set_assignments
            rows.append(("permission set assignments added / removed", f"{granted['added']} / {granted['removed']}"))
        rows += [
            ("waiting for a scheduled retry (licences, throttling)", s.outcome["retrying"]),
            ("retries scheduled", s.transient_retries),
            ("dead-lettered messages", c.dead_lettered),
            ("failure digest emails", c.emails),
            ("Salesforce API calls (writes)", f"{c.salesforce_calls} ({c.salesforce_writes})"),
            ("Graph API calls", c.graph_calls),
            ("duration", f"{c.seconds:.1f} s"),
        ]
        for name, value in rows:
            table.add_row(name, str(value))
        self.console.print(table)

    def emails(self, stack: LocalStack) -> None:
        if stack.graph.outbox:
            mail = stack.graph.outbox[0]
            self.console.print(f"[bold]First failure digest[/] to {', '.join(mail.to)}: {mail.subject}")
            self.console.print(mail.body[:1500])
