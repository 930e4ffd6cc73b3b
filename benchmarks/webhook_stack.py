"""What the notification benchmarks share: the local stack provisioned once by the detect timer, with
the app's HTTP functions served on loopback the way the Functions host serves them and the Graph
`users` subscription created by the manage_subscriptions timer; and latency percentiles."""
from __future__ import annotations

import contextlib
import logging
import statistics
from dataclasses import dataclass
from typing import Any, AsyncIterator

from azure.functions.timer import TimerRequest

from cli.demo import IDLE_SECONDS, run_cycle
from cli.local_stack import LocalStack, app_settings, local_stack
from emulators.functions_host import registered_functions
from emulators.functions_http import HttpTriggerHost


@dataclass
class WebhookStack:
    stack: LocalStack
    functions: dict[str, Any]  # the app's registered functions by name
    http: HttpTriggerHost

    async def subscribe(self) -> Any:
        """Let the manage_subscriptions timer create the `users` subscription (validated against the
        webhook); returns the emulator's record of it. Tenant changes made before this do not notify."""
        await self.functions["manage_subscriptions"](TimerRequest(past_due=False))
        [subscription] = self.stack.graph.subscriptions.active.values()
        return subscription


@contextlib.asynccontextmanager
async def provisioned_webhook_stack(users: int, idle_seconds: float = IDLE_SECONDS) -> AsyncIterator[WebhookStack]:
    """A seeded tenant of `users` provisioned by one detect cycle, with the webhooks' URLs in the settings."""
    import function_app

    with local_stack(users=users) as stack:
        async with HttpTriggerHost(function_app.app) as http:
            urls = {"NOTIFICATION_URL": http.url_for("graph_notifications"),
                    "LIFECYCLE_NOTIFICATION_URL": http.url_for("graph_lifecycle")}
            async with app_settings(stack, urls):
                await run_cycle(stack, idle_seconds=idle_seconds)
                yield WebhookStack(stack, registered_functions(function_app.app), http)


def latency_figures(samples_seconds: list[float], quantiles: tuple[int, ...] = (50, 95, 99)) -> dict[str, float | None]:
    """p50/p95/p99 (inclusive method) and max, in milliseconds; None when there are no samples."""
    ms = sorted(s * 1000 for s in samples_seconds)
    cuts = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else ms * 99
    figures: dict[str, float | None] = {f"p{q}_ms": round(cuts[q - 1], 1) if ms else None for q in quantiles}
    figures["max_ms"] = round(ms[-1], 1) if ms else None
    return figures


def quiet_logging() -> None:
    """Only the figures reach the terminal: the seeded tenant fails users on purpose (the audit logger still
    records at INFO for the provisioning summary), and the AMQP stand-in's peer resets at shutdown."""
    console = logging.StreamHandler()
    console.setLevel(logging.CRITICAL)
    logging.basicConfig(level=logging.WARNING, handlers=[console])
    logging.getLogger("proton").setLevel(logging.CRITICAL)
