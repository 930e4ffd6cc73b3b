"""check, plan and sync against whatever the settings point at: a real tenant and org, or the
emulators."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from datetime import datetime, timezone

from shared.bootstrap import APP_ROOT, Container
from shared.core.mapping_config import configured_mapping
from shared.core.errors import PermanentError
from shared.core.messages import ReconcileMessage, is_object_id
from shared.core.models import UserLink
from shared.services.provision import UserResult

BATCH = 200  # users per reconcile batch: one SOQL query and ≤1 create + ≤1 update call


@dataclass
class CheckResult:
    step: str
    ok: bool
    detail: str


async def check(container: Container) -> list[CheckResult]:
    """Like the connector's Test Connection: can we read the app's roles in Entra, and query Salesforce?"""
    results = []
    sp = container.settings.SALESFORCE_SERVICE_PRINCIPAL_ID
    try:
        roles = await container.directory.app_roles(sp)
        results.append(CheckResult("Graph: read the Salesforce app's roles", True, f"{len(roles)} app roles"))
    except Exception as exc:  # reported, not raised: check lists every problem
        results.append(CheckResult("Graph: read the Salesforce app's roles", False, f"{type(exc).__name__}: {exc}"))
    try:
        profiles = await container.org.profile_ids()
        results.append(CheckResult("Salesforce: query profiles", True, f"{len(profiles)} profiles"))
    except Exception as exc:
        results.append(CheckResult("Salesforce: query profiles", False, f"{type(exc).__name__}: {exc}"))
    targets = configured_mapping(container.settings.MAPPING_FILE, APP_ROOT).permission_sets.targets
    if targets:
        step = "Salesforce: the mapping's permission sets exist"
        try:
            found = await container.org.permission_target_ids(targets)
            missing = sorted(t.key for t in targets if t not in found)
            results.append(CheckResult(step, not missing, f"{len(found)} of {len(targets)} found"
                                       + (f"; missing: {', '.join(missing)}" if missing else "")))
        except Exception as exc:
            results.append(CheckResult(step, False, f"{type(exc).__name__}: {exc}"))
    return results


async def users_in_scope_or_linked(container: Container) -> list[str]:
    """Everyone the app would look at: assigned users now, and users in the stored snapshot."""
    current = await container.detector.assigned_users()
    return sorted(set(current) | set(container.state.assignment_snapshot()))


async def plan(container: Container) -> tuple[list[UserResult], dict[str, str], int | None]:
    """Read-only: what a reconcile of every relevant user would do, the status of each held
    deactivation (Entra id → held, released, rejected) and how many deactivations the deletion
    threshold allows per window (None: no threshold). Nothing is written anywhere."""
    ids = await users_in_scope_or_linked(container)
    results: list[UserResult] = []
    for start in range(0, len(ids), BATCH):
        results += await container.provisioner.reconcile(ids[start:start + BATCH], apply=False)
    return results, {h.entra_id: h.status for h in container.safety.held()}, container.safety.limit()


def shown_action(result: UserResult, holds: dict[str, str]) -> str | None:
    """The action as the plan shows it: a deactivation the deletion threshold holds (or an admin
    rejected) is not applied by the next cycle, so it is shown as "held" (or "kept") instead."""
    op = result.operation
    if op is None:
        return None
    if op.action == "deactivate":
        return {"held": "held", "rejected": "kept (rejected)"}.get(holds.get(result.entra_id, ""), op.action)
    return op.action


@dataclass
class CollectingQueue:
    """A ReconcileQueue that keeps messages in memory, for `sync` (one pass without Service Bus)."""

    messages: list[ReconcileMessage] = field(default_factory=list)

    async def send(self, messages: Sequence[ReconcileMessage], *, delay_seconds: float = 0) -> None:
        self.messages.extend(messages)


async def sync(container: Container) -> list[UserResult]:
    """Detect changes, then reconcile every changed user in batches, in this process."""
    from shared.services.detect_changes import ChangeDetector

    queue = CollectingQueue()
    detector = ChangeDetector(container.directory, queue, container.state, container.detector.config)
    await detector.run_cycle()
    ids = sorted({m.entra_id for m in queue.messages})
    results: list[UserResult] = []
    for start in range(0, len(ids), BATCH):
        results += await container.provisioner.reconcile(ids[start:start + BATCH])
    return results


async def relink(container: Container, entra_id: str, salesforce_id: str, *, force: bool = False) -> UserLink:
    """Link an Entra user to a given Salesforce user, for when a matching value changed and the sticky
    link (or the matching attributes) would otherwise pick the wrong account. The next reconcile of the
    user brings that Salesforce user in line. A Salesforce user already linked to another Entra user is
    refused (two Entra users would overwrite each other's changes) unless `force` moves the link."""
    if not is_object_id(entra_id):
        raise PermanentError("InvalidEntraId", f"{entra_id!r} is not an Entra object id", system="cli")
    found = await container.org.find_users(["Id", "Username"], ids=[salesforce_id])
    if not found:
        raise PermanentError("SalesforceUserNotFound", f"no Salesforce user with id {salesforce_id}", system="cli")
    entra_id = entra_id.lower()
    others = [link for link in container.state.links_to_salesforce_user(found[0].id) if link.entra_id != entra_id]
    if others and not force:
        raise PermanentError(
            "SalesforceUserAlreadyLinked",
            f"Salesforce user {found[0].id} is already linked to Entra user {others[0].entra_id}; refusing to link "
            f"it to {entra_id} as well (use --force to move the link, or `unlink --entra-id {others[0].entra_id}`)",
            system="cli",
        )
    for other in others:
        container.state.delete_link(other.entra_id)
    link = UserLink(entra_id, found[0].id, last_outcome="relinked", updated_at=datetime.now(timezone.utc).isoformat())
    container.state.put_link(link)
    return link


async def unlink(container: Container, entra_id: str) -> UserLink | None:
    """Forget an Entra user's sticky link, so its next reconcile matches it afresh by the matching
    attributes. The Salesforce user is not touched. Returns the link that was removed (None: there was none)."""
    if not is_object_id(entra_id):
        raise PermanentError("InvalidEntraId", f"{entra_id!r} is not an Entra object id", system="cli")
    link = container.state.get_link(entra_id)
    if link is not None:
        container.state.delete_link(entra_id)
    return link
