"""The scenario, shared by the command and the CI test.

The demo tenant (messy on purpose: missing mail, usernames taken in another org, too few licences,
disabled and deleted users, group assignments, two roles) is provisioned with faults on from the
first call to the last:
1. the first detect cycle (empty delta pages, replayed objects) enqueues everyone;
2. a provisioning worker process takes the first batch and is killed after its Salesforce write;
3. the real queue trigger drains the queue (deliveries reordered) while, part-way through, a day of
   changes lands in Entra (renames, an email and UPN change, leavers, unassignments, role changes, new
   hires) and the Salesforce session expires;
4. the next detect cycle dies between sending and checkpointing, and the one after re-runs it;
5. duplicate and stale messages arrive; unassigned users are re-assigned, others edited, and the
   delta token expires, so the following cycle resyncs in full;
6. the queue is drained, a last detect cycle finds what is left, dead letters go out as digests.
Retries, leases and timeouts are shortened through the app's settings, nothing else changes."""
from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from azure.functions.timer import TimerRequest

from cli.demo import max_concurrent_calls
from cli.local_stack import QUEUE, LocalStack, app_settings, local_stack
from cli.provisioning_log import ProvisioningLog
from emulators.functions_host import Invocation, QueueTriggerHost, registered_functions
from emulators.graph.demo_tenant import DemoChanges, apply_demo_changes

from . import faults
from .checks import Findings, check
from .worker import read_audit_file

log = logging.getLogger(__name__)

# Production waits 30 s to 1 h between retries, 6 h for a licence, holds a user 120 s and gives
# Salesforce 30 s; the run shortens each through the same settings an operator would use.
SETTINGS = {
    "RETRY_BASE_SECONDS": "0.5",
    "RETRY_MAX_SECONDS": "4",
    "LICENSE_RETRY_SECONDS": "1",
    "LEASE_SECONDS": "10",
    "SALESFORCE_TIMEOUT_SECONDS": "2",
    "QUARANTINE_BACKOFF_BASE_SECONDS": "1",
    "QUARANTINE_BACKOFF_MAX_SECONDS": "4",
}
LOCK_SECONDS = 5.0  # the queue's message lock (Service Bus default: 30 s, up to 5 minutes)
DRAIN_TIMEOUT_SECONDS = 1800.0
CHANGES_AT = 0.4  # share of the first sync's messages processed when the day of changes lands
DUPLICATED_SHARE = 0.02  # users that get duplicate and stale messages


@dataclass
class ScenarioResult:
    findings: Findings
    seconds: float
    salesforce_calls: int
    graph_calls: int  # HTTP requests the in-process workers sent ($batch counts once)
    graph_requests_served: int  # what the Graph emulator served, each $batch item counted
    faults: dict[str, int]
    tenant_changes: dict[str, int]
    invocations: int
    duplicates_dropped: int = 0

    def figures(self) -> dict[str, Any]:
        f = self.findings
        return {
            "users": f.users,
            "in_scope": f.in_scope,
            "converged": f.converged,
            "converged_percent": f.converged_percent,
            "failed_and_reported": f.failed_reported,
            "duplicates": len(f.duplicates),
            "lost": len(f.lost),
            "out_of_scope_but_active": len(f.out_of_scope_active),
            "deleted": len(f.deleted),
            "dead_lettered": dict(f.dead_lettered.most_common()),
            "dead_letter_problems": len(f.dead_letter_problems),
            "emails": f.emails,
            "quarantine_alerts": f.quarantines,
            "salesforce_calls": self.salesforce_calls,
            "graph_calls": self.graph_calls,
            "graph_requests_served": self.graph_requests_served,
            "faults_injected": self.faults,
            "tenant_changes": self.tenant_changes,
            "function_invocations": self.invocations,
            "duplicates_dropped_by_service_bus": self.duplicates_dropped,
            "wall_seconds": round(self.seconds, 1),
        }


async def run_scenario(users: int, seed: int = 7) -> ScenarioResult:
    with local_stack(users=users, seed=seed, lock_seconds=LOCK_SECONDS, settings=SETTINGS) as stack, \
            ProvisioningLog() as plog:
        async with app_settings(stack):
            return await _Run(stack, seed, plog).run()


class _Run:
    def __init__(self, stack: LocalStack, seed: int, plog: ProvisioningLog) -> None:
        import function_app

        self.stack = stack
        self.rng = random.Random(seed)
        self.seed = seed
        self.plog = plog
        self.functions = registered_functions(function_app.app)
        self.scenario_faults: Counter[str] = Counter()
        self.tenant_changes: Counter[str] = Counter()
        self.invocations = 0
        self.usernames: dict[str, set[str]] = {}
        self.salesforce_ids: set[str] = set()

    @property
    def container(self) -> Any:
        from shared.bootstrap import current_container

        return current_container()

    async def run(self) -> ScenarioResult:
        stack = self.stack
        started = time.monotonic()
        self._note_usernames()
        faults.switch_on(stack, self.seed)
        await self._detect()
        first_sync = stack.servicebus.active_count(QUEUE)
        await faults.kill_worker_mid_batch(stack, stack.workdir / "killed-worker-audit.jsonl")
        self.scenario_faults["provisioning worker killed mid-batch"] += 1
        host = QueueTriggerHost(stack.env["ServiceBusConnection"], QUEUE, self.functions["provision_user"],
                                max_concurrent_calls=max_concurrent_calls(), on_invocation=self._invoked)
        draining = asyncio.create_task(host.run())
        try:
            await self._until(lambda: self.invocations >= first_sync * CHANGES_AT, draining)
            changes = apply_demo_changes(stack.tenant, stack.demo, seed=self.seed + 1)
            self.tenant_changes.update({k.removesuffix("_ids"): len(v) for k, v in vars(changes).items()
                                        if k.endswith("_ids")})
            self._note_usernames()
            stack.org.expire_session(1)
            faults.one_of_each(stack)
            with faults.detect_dies_at_checkpoint(self.container):
                try:
                    await self._detect()
                except faults.DetectKilled:
                    self.scenario_faults["detect cycle killed before checkpoint"] += 1
            await self._detect()  # the next timer run starts from the old checkpoint
            await self._duplicate_and_stale_messages()
            self._reassign_and_edit(changes)
            stack.graph.delta.expire_tokens()
            await self._detect()  # a full resync
            await self._until(self._drained, draining)
            await self._detect()  # whatever is left
            await self._until(self._drained, draining)
        finally:
            host.stop()
            await draining
        self._note_salesforce_ids()
        failures = {m.message_id: self.container.state.get_failure(m.message_id or "")
                    for m in stack.servicebus.messages_seen(QUEUE, dead_letter=True)}
        notify = QueueTriggerHost(stack.env["ServiceBusConnection"], QUEUE, self.functions["notify_failures"],
                                  dead_letter=True, many=True, max_concurrent_calls=500)
        await notify.run(idle_seconds=2.0)
        seconds = time.monotonic() - started
        injected = faults.injected(stack, self.scenario_faults)
        faults.switch_off(stack)
        settings = self.container.settings
        from shared.bootstrap import APP_ROOT
        from shared.core.mapping_config import configured_mapping

        findings = check(stack, configured_mapping(settings.MAPPING_FILE, APP_ROOT), settings.profile_priority,
                         self._user_ids(), self.usernames, self.salesforce_ids, failures,
                         self.plog.records + read_audit_file(stack.workdir / "killed-worker-audit.jsonl"))
        return ScenarioResult(findings, seconds, stack.org.calls.total, sum(self.container.graph_calls.values()),
                              sum(stack.graph.calls.values()), injected,
                              dict(self.tenant_changes), self.invocations,
                              stack.servicebus.duplicates_dropped(QUEUE))

    # ---- steps -----------------------------------------------------------------------------------

    async def _detect(self) -> None:
        log.info("detect cycle after %d invocations", self.invocations)
        await self.functions["detect_changes"](TimerRequest(past_due=False))
        self._note_salesforce_ids()

    def _invoked(self, _: Invocation) -> None:
        self.invocations += 1

    async def _until(self, condition: Callable[[], bool], draining: "asyncio.Task[Any]") -> None:
        """Wait while the queue trigger runs; its failure ends the wait with its error."""
        deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
        quiet = 0
        while quiet < 2:
            if draining.done():
                draining.result()
                raise RuntimeError("the queue trigger stopped early")
            if time.monotonic() > deadline:
                raise TimeoutError("the scenario did not settle in time")
            quiet = quiet + 1 if condition() else 0
            await asyncio.sleep(0.25)
            bus = self.stack.servicebus
            log.debug("invocations %d, active %d, locked %d, scheduled %d", self.invocations,
                      bus.active_count(QUEUE), bus.locked_count(QUEUE), bus.scheduled_count(QUEUE))
        self._note_salesforce_ids()

    def _drained(self) -> bool:
        bus = self.stack.servicebus
        return not (bus.active_count(QUEUE) or bus.locked_count(QUEUE) or bus.scheduled_count(QUEUE))

    async def _duplicate_and_stale_messages(self) -> None:
        """Some users get the same message twice (duplicate detection drops one), a second message of
        their own and one observed an hour ago that arrives last."""
        from shared.core.messages import ReconcileMessage

        live = [u for u in self._user_ids() if self.stack.tenant.find_user(u)]
        picked = self.rng.sample(live, max(1, int(len(live) * DUPLICATED_SHARE)))
        hour_ago = datetime.now(timezone.utc) - timedelta(hours=1)
        messages = []
        for user_id in picked:
            again = ReconcileMessage.new(user_id, "notification", f"convergence-{self.seed}")
            messages += [again, again, ReconcileMessage.new(user_id, "notification", f"convergence-{self.seed}-2")]
        messages += [ReconcileMessage.new(u, "notification", f"stale-{self.seed}", hour_ago) for u in picked]
        await self.container.queue.send(messages)
        self.scenario_faults["duplicate messages sent"] += 2 * len(picked)
        self.scenario_faults["stale messages sent"] += len(picked)

    def _reassign_and_edit(self, changes: DemoChanges) -> None:
        tenant, demo = self.stack.tenant, self.stack.demo
        for user_id in sorted(changes.unassigned_ids)[::2]:
            for role_id in sorted(demo.expected_roles[user_id]):
                tenant.assign(demo.service_principal_id, user_id, role_id)
            self.tenant_changes["reassigned"] += 1
        live = sorted(u for u in demo.expected_roles if tenant.find_user(u))
        for user_id in self.rng.sample(live, max(1, len(live) // 100)):
            tenant.update_user(user_id, surname=f"Edited {user_id[:6]}", preferredLanguage="de-DE")
            self.tenant_changes["edited"] += 1

    # ---- bookkeeping -----------------------------------------------------------------------------

    def _user_ids(self) -> list[str]:
        """Every user the tenant had during the run (new hires included, deleted ones too)."""
        return sorted(set(self.stack.demo.user_ids) | set(self.usernames))

    def _note_usernames(self) -> None:
        """Remember every UPN each user has had: a Salesforce user under an old one is still theirs."""
        tenant = self.stack.tenant
        for user_id in set(tenant.user_ids) | set(self.usernames):
            user = tenant.find_user(user_id)
            if user is not None:
                self.usernames.setdefault(user_id, set()).add(user["userPrincipalName"].lower())

    def _note_salesforce_ids(self) -> None:
        self.salesforce_ids |= {u["Id"] for u in self.stack.org.users()}
