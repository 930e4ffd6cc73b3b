"""The scenario's faults: switched on in the emulators' own knobs (which count what fired), plus the two
crashes: the detect cycle dying between sending and checkpointing, and a provisioning worker process
killed after its Salesforce write and before it settled its messages."""
from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

from cli.local_stack import QUEUE, LocalStack

# ≈10% of Salesforce calls fail: lock contention, the daily limit, 503s (JSON and a maintenance page)
# and calls that hang past the client's timeout (answered, and applied, HANG_SECONDS later).
SALESFORCE_FAULT_RATES = {"lock": 0.025, "limit": 0.02, "unavailable": 0.02, "html503": 0.01, "hang": 0.025}
# ≈5% of the app's Graph requests are throttled or refused, with Retry-After as Graph sends it; inside
# $batch, 1% of the items (each user read) are throttled on their own.
GRAPH_FAULT_RATES = {429: 0.03, 503: 0.02}
GRAPH_ROUTES = ("batch", "users.delta", "users.sendMail", "servicePrincipals.*", "groups.*")
GRAPH_ITEM_FAULT_RATES = {429: 0.01}
GRAPH_ITEM_ROUTES = ("users.get", "users.appRoleAssignments")
GRAPH_RETRY_AFTER_SECONDS = 1
HANG_SECONDS = 3.0  # longer than the run's SALESFORCE_TIMEOUT_SECONDS
DELTA_EMPTY_PAGES = 3  # empty pages that still carry a nextLink, at the start of the first sync
DELTA_REPLAY = 5  # objects each delta page repeats from the page before
WORKER_KILL_TIMEOUT_SECONDS = 180.0

_SALESFORCE_NAMES = {
    "lock": "salesforce UNABLE_TO_LOCK_ROW",
    "limit": "salesforce REQUEST_LIMIT_EXCEEDED",
    "unavailable": "salesforce 503",
    "html503": "salesforce 503 (HTML page)",
    "hang": "salesforce timeout",
    "session_expired": "salesforce INVALID_SESSION_ID",
}
_DELTA_NAMES = {
    "expired_token": "graph delta token expired",
    "gone": "graph delta token gone (410)",
    "empty_page": "graph empty delta page with nextLink",
    "replayed_object": "graph replayed delta object",
}


def switch_on(stack: LocalStack, seed: int) -> None:
    """Turn on the faults that fire at random for the whole run, and reorder the queue's deliveries."""
    for kind, rate in SALESFORCE_FAULT_RATES.items():
        stack.org.faults.fail_rate(kind, rate, seed=seed)
    stack.org.faults.hang_seconds = HANG_SECONDS
    for routes, rates in ((GRAPH_ROUTES, GRAPH_FAULT_RATES), (GRAPH_ITEM_ROUTES, GRAPH_ITEM_FAULT_RATES)):
        for route in routes:
            for status, rate in rates.items():
                stack.graph.faults.add(route, status, rate=rate, retry_after=GRAPH_RETRY_AFTER_SECONDS)
    stack.graph.delta.empty_pages = DELTA_EMPTY_PAGES
    stack.graph.delta.replay = DELTA_REPLAY
    stack.servicebus.reorder_deliveries(QUEUE, seed)


def one_of_each(stack: LocalStack) -> None:
    """Queue one Salesforce fault of every kind for the next calls, so that none is left to chance."""
    for kind in SALESFORCE_FAULT_RATES:
        stack.org.faults.fail_next(kind)


def switch_off(stack: LocalStack) -> None:
    stack.org.faults.clear()
    stack.graph.faults.clear()
    stack.graph.delta.replay = 0


def injected(stack: LocalStack, extra: Counter[str]) -> dict[str, int]:
    """Every fault that fired, by kind, as the emulators counted them (plus the scenario's own)."""
    kinds: Counter[str] = Counter()
    for kind, count in stack.org.faults.injected.items():
        kinds[_SALESFORCE_NAMES.get(kind, f"salesforce {kind}")] += count
    for status, count in stack.graph.faults.injected.items():
        kinds[f"graph {status}"] += count
    for kind, count in stack.graph.delta.served.items():
        kinds[_DELTA_NAMES.get(kind, f"graph delta {kind}")] += count
    kinds["reordered deliveries"] += stack.servicebus.reordered(QUEUE)
    kinds.update(extra)
    return {kind: count for kind, count in sorted(kinds.items()) if count}


class DetectKilled(BaseException):
    """The detect worker died here. A BaseException, as the process's end would be: nothing in the
    product may catch it and carry on."""


class _DiesAtCheckpoint:
    """The state store as the dying detect cycle sees it: everything works until it checkpoints."""

    def __init__(self, state: Any) -> None:
        self._state = state

    def __getattr__(self, name: str) -> Any:
        return getattr(self._state, name)

    def set_cursor(self, *args: Any) -> None:
        raise DetectKilled("killed after sending its messages, before storing the delta cursor")

    def apply_assignment_changes(self, *args: Any) -> None:
        raise DetectKilled("killed after sending its messages, before storing the assignment snapshot")


@contextlib.contextmanager
def detect_dies_at_checkpoint(container: Any) -> Iterator[None]:
    """While inside, the container's detect cycle dies at its first checkpoint."""
    from shared.services.detect_changes import ChangeDetector

    original = container.detector
    container.detector = ChangeDetector(container.directory, container.queue, _DiesAtCheckpoint(container.state),
                                        original.config)
    try:
        yield
    finally:
        container.detector = original


async def kill_worker_mid_batch(stack: LocalStack, audit_file: Path) -> None:
    """Start a provisioning worker process on the queue and SIGKILL it from inside the Salesforce
    emulator the moment its first write has been applied, before the answer reaches it: Salesforce is
    changed, the worker's messages are neither completed nor abandoned, and their locks must expire
    before anyone sees them again."""
    log = (stack.workdir / "killed-worker.log").open("w")
    worker = subprocess.Popen([sys.executable, "-m", "benchmarks.convergence.worker", str(audit_file)],
                              env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT)

    def kill() -> None:
        stack.org.faults.after_write = None
        worker.kill()

    stack.org.faults.after_write = kill
    try:
        await asyncio.to_thread(worker.wait, WORKER_KILL_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        worker.kill()
        raise RuntimeError("the provisioning worker made no Salesforce write; see killed-worker.log") from None
    finally:
        stack.org.faults.after_write = None
        log.close()
    if worker.returncode != -9:
        raise RuntimeError(f"the provisioning worker ended by itself ({worker.returncode}); see killed-worker.log")
