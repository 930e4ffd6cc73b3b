"""Provision users: read each user's current Entra state, map, match in Salesforce, plan, apply.

Level-triggered: a message only says "user X may have changed", so duplicates, replays and
out-of-order delivery are harmless, and re-running on an unchanged user makes no Salesforce write.
Shaped for batches: one Graph read per user, one SOQL query and at most one create and one update call
(≤200 records each) per batch of users."""
from __future__ import annotations

import logging
from collections import defaultdict
import random
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from ..core.escrow import elapsed_seconds, step_seconds
from ..core.errors import InvalidMessage, PermanentError, ProvisioningError, TransientError
from ..core.mapping import (
    PROFILE_NAME,
    USER_ROLE_NAME,
    AttributeMapping,
    MappingInput,
    fields_hash,
    map_user,
)
from ..core.messages import ReconcileMessage, failure_key
from ..core.models import AppRole, EntraUserState, FailureRecord, SalesforceUser, UserLink
from ..core.planning import Operation, index_for_matching, match_by_precedence, out_of_scope_reason, plan_user
from ..core.ports import Directory, ReconcileQueue, SalesforceOrg, StateStore
from ..core.salesforce_rules import check_user_record, fields_with_invalid_text, is_parked, normalize_picklists
from ..core.unique_values import with_picks
from . import metrics
from .audit import OperationRecord
from .batching import Batcher
from .escrow import Escrow
from .permission_sets import PermissionSetAssigner, PermissionSetChange, PermissionSetSubject
from .quarantine import Quarantine
from .safety import DeletionGuard
from .salesforce_references import SalesforceReferences
from .unique_values import TakenValues, UniqueValuePicker, clash_is_transient

log = logging.getLogger(__name__)

APP_ROLES_TTL_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 6
    base_seconds: float = 30.0
    max_seconds: float = 3600.0
    # LICENSE_LIMIT_EXCEEDED waits for a licence to free up on the escrow's schedule: this long for the
    # first retry (6 h), then 12 h, 24 h, 48 h... after the first failure.
    parked_seconds: float = 6 * 3600.0

    def parked_delay(self, attempt: int) -> float:
        return step_seconds(attempt, self.parked_seconds)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with ±20% jitter, never sooner than the service's Retry-After."""
        backoff = min(self.max_seconds, self.base_seconds * 2**attempt) * random.uniform(0.8, 1.2)
        return max(backoff, retry_after or 0.0)


@dataclass(frozen=True, slots=True)
class ProvisioningConfig:
    service_principal_id: str
    mapping: AttributeMapping
    profile_priority: tuple[str, ...] = ()
    lease_seconds: float = 120.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_batch: int = 200  # Salesforce collections take at most 200 records per call
    batch_wait_seconds: float = 0.05


@dataclass(frozen=True, slots=True)
class UserResult:
    entra_id: str
    operation: Operation | None = None
    error: ProvisioningError | None = None
    duration_ms: float = 0.0  # this user's share of its batch's time
    permission_sets: PermissionSetChange | None = None  # assignments changed (planned, in a dry run)

    @property
    def status(self) -> str:
        if self.error is not None:
            return "failure"
        wrote = self.operation is not None and self.operation.is_write
        return "success" if wrote or (self.permission_sets is not None and self.permission_sets.changed) else "skipped"


@dataclass(frozen=True, slots=True)
class UserTrace:
    """One user's reconcile with the facts behind it (what Entra said, the mapped fields, the scope
    decision, the link and the Salesforce user matched), for provision-on-demand."""

    result: UserResult
    state: EntraUserState | None
    desired: Mapping[str, Any] | None
    scope_reason: str | None
    link: UserLink | None
    current: SalesforceUser | None


class MessageFailed(Exception):
    """The message must end in the dead-letter queue. The failure is recorded in state first, so the
    dead-letter handler knows the original reason; redeliveries fail at once without new work."""

    def __init__(self, failure: FailureRecord) -> None:
        super().__init__(f"{failure.code}: message {failure.message_id} for {failure.entra_id or 'unknown user'}")
        self.failure = failure


@dataclass(slots=True)
class _Work:
    """One user's progress through a batch."""

    entra_id: str
    state: EntraUserState | None = None
    source: MappingInput | None = None  # what the mapping read, kept for SelectUniqueValue on create
    desired: dict[str, Any] | None = None
    match_values: tuple[tuple[str, Any], ...] = ()  # (matching field, value) in priority order
    scope_reason: str | None = None
    link: UserLink | None = None
    current: SalesforceUser | None = None
    operation: Operation | None = None
    error: ProvisioningError | None = None
    permission_sets: PermissionSetChange | None = None
    stored_link: UserLink | None = None  # the link as this batch left it (link: as it was found)
    intent: str | None = None  # the Username of an earlier create whose answer never came
    recovered: bool = False  # linked to the user that earlier create made; link not stored yet


class Provisioner:
    def __init__(
        self,
        directory: Directory,
        org: SalesforceOrg,
        state: StateStore,
        queue: ReconcileQueue,
        config: ProvisioningConfig,
        safety: DeletionGuard | None = None,
        quarantine: Quarantine | None = None,
        escrow: Escrow | None = None,
    ) -> None:
        self._directory = directory
        self._org = org
        self._state = state
        self._queue = queue
        self._config = config
        self._safety = safety  # None: every deactivation is applied (no deletion threshold)
        self._quarantine = quarantine  # None: Salesforce is always called
        self._escrow = escrow  # None: failed users are not retried on later cycles
        self._roles: Mapping[str, AppRole] = {}
        self._roles_read_at = float("-inf")
        self._batches: Batcher | None = None
        self._permission_sets = PermissionSetAssigner(org, state, config.mapping.permission_sets.targets)
        self._unique_taken = TakenValues()  # SelectUniqueValue values seen taken, kept across batches

    # ---- message handling (settlement policy) -------------------------------------------------

    async def handle_message(self, body: bytes | str, message_id: str) -> UserResult:
        """Process one queue message. Returns normally when the message can be completed (applied,
        nothing to do, or a retry was scheduled); raises MessageFailed when it must be dead-lettered."""
        message_id = failure_key(message_id, body)
        recorded = self._state.get_failure(message_id)
        if recorded is not None:
            log.info("message %s already failed with %s; waiting for dead-lettering", message_id, recorded.code)
            raise MessageFailed(recorded)
        try:
            message = ReconcileMessage.from_json(body, message_id)
        except InvalidMessage as exc:
            raise MessageFailed(self._record_failure(message_id, "", "parse", exc)) from None
        metrics.record_queue_lag(message.observed_at, message.reason)
        if self._quarantine is not None and not await self._quarantine.admit(message):
            return UserResult(message.entra_id)  # deferred: Salesforce is not called while quarantined

        result = await self._batcher().submit(message.entra_id, message_id)
        error = result.error
        if error is None:
            return result
        if self._quarantine is not None and await self._quarantine.defer_failed(message, error):
            if _retryable(error):
                self._audit(result, message_id, status="retrying")
            return result
        action = result.operation.action if result.operation else "reconcile"
        parked, retryable = is_parked(error), _retryable(error)
        if retryable and message.attempt < self._config.retry.max_attempts:
            if parked:
                delay = self._config.retry.parked_delay(message.attempt)
            else:
                delay = self._config.retry.delay(message.attempt, error.retry_after)
            await self._queue.send([message.retry()], delay_seconds=delay)
            log.warning("entra=%s %s failed %s (%s); retry %d in %.0f s", message.entra_id, action,
                        "for want of a licence" if parked else "transiently", error.code, message.attempt + 1, delay)
            self._audit(result, message_id, status="retrying")
            return result
        if error.transient:
            error = PermanentError("RetriesExhausted", f"gave up after {message.attempt + 1} attempts; last error "
                                   f"{error.code}: {error.message}", system=error.system)
        elif parked:  # same code, so the email keeps the licence advice
            error = PermanentError(error.code, f"{error.message} (still refused after {message.attempt + 1} attempts)",
                                   system=error.system, fields=error.fields)
        if retryable:  # reconcile left these to be audited here, once their fate is known
            self._audit(replace(result, error=error), message_id)
        failure = self._record_failure(message_id, message.entra_id, action, error)
        if self._escrow is not None:  # retried on later cycles; the escrow's clock started at the first refusal
            self._escrow.record(failure, since_first_failure=elapsed_seconds(message.attempt, self._config.retry.parked_seconds)
                                if parked else 0.0)
        raise MessageFailed(failure)

    def _record_failure(self, message_id: str, entra_id: str, action: str, error: ProvisioningError) -> FailureRecord:
        failure = FailureRecord(
            message_id=message_id,
            entra_id=entra_id,
            action=action,
            code=error.code,
            description=error.message,
            occurred_at=datetime.now(timezone.utc).isoformat(),
        )
        self._state.record_failure(failure)
        log.error("message %s for entra=%s failed permanently: %s", message_id, entra_id or "-", error.code)
        return failure

    # ---- reconciliation -----------------------------------------------------------------------

    def _batcher(self) -> Batcher:
        if self._batches is None:  # made on first use, inside the worker's event loop
            self._batches = Batcher(self._reconcile_batch, max_batch=self._config.max_batch,
                                    max_wait_seconds=self._config.batch_wait_seconds)
        return self._batches

    async def _reconcile_batch(self, entra_ids: Sequence[str], message_ids: Mapping[str, str]) -> dict[str, UserResult]:
        # handle_message audits transient and parked failures once it knows whether they are retried or final
        results = await self.reconcile(entra_ids, message_ids=message_ids, audit_transient=False)
        if self._quarantine is not None:
            await self._quarantine.observe(results)
        if self._escrow is not None:
            self._escrow.observe(results)
        return {r.entra_id: r for r in results}

    async def reconcile(
        self, entra_ids: Sequence[str], *, apply: bool = True, message_ids: Mapping[str, str] | None = None,
        audit_transient: bool = True,
    ) -> list[UserResult]:
        """Bring each user's Salesforce account in line with Entra. With apply=False nothing is written
        anywhere (dry-run plan). message_ids (Entra id → queue message id) only label the audit records."""
        traces = await self.trace(entra_ids, apply=apply, message_ids=message_ids, audit_transient=audit_transient)
        return [t.result for t in traces]

    async def trace(
        self, entra_ids: Sequence[str], *, apply: bool = True, message_ids: Mapping[str, str] | None = None,
        audit_transient: bool = True,
    ) -> list[UserTrace]:
        """`reconcile`, returning the facts each decision was made from as well."""
        work = {i.lower(): _Work(i.lower()) for i in entra_ids}
        owner = uuid.uuid4().hex
        claimed: list[str] = []
        started = time.monotonic()
        try:
            if apply:
                for w in work.values():
                    # Held for the whole read-plan-write so two messages for one user never both create.
                    if self._state.claim(w.entra_id, owner, self._config.lease_seconds):
                        claimed.append(w.entra_id)
                    else:
                        w.error = TransientError("UserBusy", "another worker is provisioning this user", system="lease")
            pending = [w for w in work.values() if w.error is None]
            await self._read_entra(pending)
            await self._map(pending)
            await self._plan(pending)
            if apply:
                await self._apply([w for w in pending if w.error is None])
            await self._assign_permission_sets([w for w in pending if w.error is None], apply)
        finally:
            for entra_id in claimed:
                self._state.release(entra_id, owner)
        elapsed_ms = round((time.monotonic() - started) * 1000 / max(1, len(work)), 1)
        traces = [UserTrace(UserResult(w.entra_id, w.operation, w.error, elapsed_ms, w.permission_sets), w.state, w.desired,
                            w.scope_reason, w.link, w.current) for w in work.values()]
        for r in (t.result for t in traces):
            retryable = r.error is not None and _retryable(r.error)
            if apply and (audit_transient or not retryable):
                self._audit(r, (message_ids or {}).get(r.entra_id, ""), status="retrying" if retryable else None)
        return traces

    async def _app_roles(self) -> Mapping[str, AppRole]:
        if time.monotonic() - self._roles_read_at > APP_ROLES_TTL_SECONDS:
            roles = await self._directory.app_roles(self._config.service_principal_id)
            self._roles = {r.id: r for r in roles}
            self._roles_read_at = time.monotonic()
        return self._roles

    async def _read_entra(self, work: list[_Work]) -> None:
        """Every user's current state, read in Graph JSON batches (two reads per user, 20 per call)."""
        if not work:
            return
        states = await self._directory.user_states(
            [w.entra_id for w in work], self._config.mapping.source_attributes, self._config.service_principal_id,
            group_ids=self._config.mapping.permission_sets.group_ids,
        )
        for w in work:
            outcome = states[w.entra_id]
            if isinstance(outcome, ProvisioningError):
                w.error = outcome
            else:
                w.state = outcome

    async def _map(self, work: list[_Work]) -> None:
        mapping = self._config.mapping
        defaults = mapping.defaults
        try:
            roles = await self._app_roles() if work else {}
        except ProvisioningError as exc:  # Graph down: each user retries on the message's own backoff
            for w in work:
                w.error = w.error or exc
            return
        references = SalesforceReferences(self._org)
        for w in work:
            if w.error is not None or w.state is None:
                continue
            w.link = self._state.get_link(w.entra_id)
            try:
                w.scope_reason = out_of_scope_reason(w.state, mapping.scoping)
            except ProvisioningError as exc:
                w.error = exc
                continue
            if w.scope_reason is not None or w.state.user is None:
                continue
            try:
                w.source, mapped = map_user(mapping, w.state.user, w.state.app_role_ids, roles,
                                            self._config.profile_priority)
                if PROFILE_NAME in mapped:
                    mapped["ProfileId"] = await references.profile_id(mapped.pop(PROFILE_NAME))
                if USER_ROLE_NAME in mapped:
                    mapped["UserRoleId"] = await references.user_role_id(mapped.pop(USER_ROLE_NAME))
            except ProvisioningError as exc:
                w.error = exc
                continue
            broken = fields_with_invalid_text(mapped)
            if broken:  # before any query is built from them: UTF-8 cannot carry these
                w.error = PermanentError("InvalidEntraAttribute", f"{', '.join(broken)}: not valid Unicode text (a lone "
                                         "UTF-16 surrogate)", system="entra", fields=broken)
                continue
            w.desired, fell_back = normalize_picklists(mapped, defaults)  # Entra's de-DE as de_DE / de
            if fell_back:
                log.info("entra=%s: %s not in the restricted picklist; the mapping's default is used",
                         w.entra_id, ", ".join(fell_back))
            w.match_values = tuple((f, w.desired.get(f)) for f in mapping.matching_fields)
        unlinked = [w for w in work if w.error is None and w.state is not None and w.link is None]
        if unlinked:
            intents = self._state.create_intents([w.entra_id for w in unlinked])
            for w in unlinked:
                w.intent = intents.get(w.entra_id)

    async def _plan(self, work: list[_Work]) -> None:
        mapping = self._config.mapping
        live = [w for w in work if w.error is None and w.state is not None]
        ids = {w.link.salesforce_id for w in live if w.link}
        wanted: dict[str, set[str]] = defaultdict(set)  # matching field → values, all in one SOQL query
        for w in live:
            for name, value in w.match_values:
                if value not in (None, ""):
                    wanted[name].add(str(value))
        # SelectUniqueValue: who holds the values new users would get is asked in the same query.
        unique = UniqueValuePicker(self._org, mapping, self._unique_taken)
        guesses = unique.first_guesses([w.source for w in live if w.link is None and w.source is not None])
        for name, values in guesses.items():
            wanted[name] |= values
        usernames = wanted.pop("Username", set()) | {w.intent for w in live if w.intent}
        found: list[SalesforceUser] = []
        if ids or usernames or wanted:
            try:
                found = await self._org.find_users(mapping.salesforce_fields, ids=ids, usernames=usernames, match=wanted)
            except ProvisioningError as exc:
                for w in live:
                    w.error = exc
                return
        unique.learn(guesses, found)
        by_id = {u.id: u for u in found}
        index = index_for_matching(found, mapping.matching_fields)
        create_only = mapping.create_only_fields()
        by_username = {str(u.get("Username") or "").casefold(): u for u in found}
        for w in live:
            made = by_username.get(w.intent.casefold()) if w.intent else None
            if made is not None:  # an earlier create landed though its answer was lost: that user is ours
                log.info("entra=%s: an earlier create whose answer was lost made sf=%s; linking it", w.entra_id, made.id)
                w.link = UserLink(w.entra_id, made.id, last_outcome="create")
                w.recovered = True
            try:
                w.current = match_by_precedence(w.link, w.match_values, by_id, index)
            except ProvisioningError as exc:
                w.error = exc
                continue
            w.operation = plan_user(w.entra_id, w.desired, w.current, w.link, create_only=create_only,
                                    scope_reason=w.scope_reason or "")
        creating = [w for w in live if w.error is None and w.operation and w.operation.action == "create"]
        picked = await unique.pick([w.source for w in creating])  # type: ignore[misc]
        for w, picks in zip(creating, picked, strict=True):
            if isinstance(picks, ProvisioningError):
                w.error = picks
            else:
                w.operation = with_picks(w.operation, picks)  # type: ignore[arg-type]
        for w in live:
            if w.error is None and w.operation and w.operation.is_write:
                # A record Salesforce would reject costs no call; dry-run shows it too.
                w.error = check_user_record(w.operation.record, creating=w.operation.action == "create")

    async def _apply(self, work: list[_Work]) -> None:
        released: frozenset[str] = frozenset()
        if self._safety is not None:  # deactivations beyond the threshold are held instead of applied
            deactivating = [w for w in work if w.operation and w.operation.action == "deactivate"]
            try:
                screening = await self._safety.screen([w.operation for w in work if w.operation])
            except ProvisioningError as exc:
                for w in deactivating:
                    w.error = exc
            else:
                for w in work:
                    verdict = screening.replacements.get(w.entra_id)
                    if isinstance(verdict, ProvisioningError):
                        w.error = verdict
                    elif verdict is not None:
                        w.operation = verdict
                released = screening.released
            work = [w for w in work if w.error is None]
        creates = [w for w in work if w.operation and w.operation.action == "create"]
        updates = [w for w in work if w.operation and w.operation.is_write and w.operation.action != "create"]
        # Written ahead: if a create's answer is lost (timeout, crash), the next reconcile still finds
        # the user it made under this Username, whatever the UPN is by then.
        intents = {w.entra_id: w.operation.record["Username"] for w in creates if w.operation.record.get("Username")}  # type: ignore[union-attr]
        if intents:
            self._state.put_create_intents(intents)
        answered: list[str] = []  # creates Salesforce surely made or surely refused: their intents are settled
        # Updates first: deactivations free licences that the creates of the same batch may need.
        for batch, call in ((updates, self._org.update_users), (creates, self._org.create_users)):
            if not batch:
                continue
            try:
                results = await call([w.operation.record for w in batch])  # type: ignore[union-attr]
            except ProvisioningError as exc:
                for w in batch:
                    w.error = exc
                continue
            for w, result in zip(batch, results, strict=True):
                if batch is creates and not (result.error and result.error.transient):  # a timeout may have landed
                    answered.append(w.entra_id)
                if result.error is not None:
                    w.error = _in_doubt(w, clash_is_transient(result.error, self._config.mapping))
                else:
                    if w.operation.salesforce_id is None:  # type: ignore[union-attr]
                        w.operation = replace(w.operation, salesforce_id=result.salesforce_id)  # created: log its id
                    self._link(w, w.operation.salesforce_id)  # type: ignore[union-attr]
        # SelectUniqueValue picks are taken once created (not when picked: a failed create is retried and
        # must be free to pick them again, or each failed attempt would use up one of its candidates).
        made = [w.operation.record for w in creates if w.error is None]  # type: ignore[union-attr]
        if made:
            self._unique_taken.add({f.target: [r[f.target] for r in made if r.get(f.target)]
                                    for f in self._config.mapping.unique_fields})
        for w in work:
            if w.operation and w.operation.action == "noop" and w.desired is not None:
                self._link(w, w.operation.salesforce_id)  # adopt a matched user, or settle a pending email
            elif w.recovered and w.operation and w.operation.action == "noop":  # out of scope, already inactive
                self._state.put_link(replace(w.link, last_outcome="deactivate",  # type: ignore[arg-type]
                                             updated_at=datetime.now(timezone.utc).isoformat()))
                w.recovered = False
        settled = answered + [w.entra_id for w in work if w.intent and not w.recovered and w.link is not None]
        if settled:
            self._state.delete_create_intents(settled)
        if released:
            self._safety.forget_released([w.entra_id for w in work if w.entra_id in released and w.error is None])  # type: ignore[union-attr]

    async def _assign_permission_sets(self, work: list[_Work], apply: bool) -> None:
        """Users in scope get the permission sets their groups grant (see services/permission_sets.py);
        out-of-scope and deactivated users keep theirs, as Salesforce keeps them on inactive users."""
        mapping = self._config.mapping.permission_sets
        if not mapping:
            return
        subjects = [PermissionSetSubject(w.entra_id, w.operation.salesforce_id, mapping.desired(w.state.member_of),
                                         w.stored_link or w.link, created=w.operation.action == "create")
                    for w in work if w.desired is not None and w.operation is not None and w.state is not None
                    and (w.operation.salesforce_id or not apply)]
        by_id = {w.entra_id: w for w in work}
        for entra_id, outcome in (await self._permission_sets.reconcile(subjects, apply=apply)).items():
            w = by_id[entra_id]
            if isinstance(outcome, ProvisioningError):
                w.error = outcome
            else:
                w.permission_sets = outcome

    def _link(self, w: _Work, salesforce_id: str | None) -> None:
        op = w.operation
        assert op is not None and salesforce_id
        pending = w.link.pending_email if w.link else None
        if op.action == "create":
            pending = None
        elif "Email" in op.changes:
            pending = op.changes["Email"][1]  # Salesforce holds it until the new owner confirms
        elif pending is not None and w.current is not None and w.current.get("Email") == pending:
            pending = None  # confirmed
        link = UserLink(
            entra_id=w.entra_id,
            salesforce_id=salesforce_id,
            applied_hash=fields_hash(w.desired or {}),
            pending_email=pending,
            last_outcome=op.action,
            updated_at=datetime.now(timezone.utc).isoformat(),
            # the permission set assignments recorded belong to this Salesforce user only
            permission_sets=w.link.permission_sets if w.link and w.link.salesforce_id == salesforce_id else (),
        )
        unchanged = w.link is not None and (w.link.salesforce_id, w.link.applied_hash, w.link.pending_email) == (
            link.salesforce_id, link.applied_hash, link.pending_email)
        if op.is_write or not unchanged:
            self._state.put_link(link)
            w.stored_link = link
        w.recovered = False

    def _audit(self, result: UserResult, message_id: str, *, status: str | None = None) -> None:
        op = result.operation
        granted = result.permission_sets or PermissionSetChange()
        action = op.action if op else "reconcile"
        OperationRecord(
            # a user whose only change is its permission sets was updated, as the connector would say
            action="update" if action == "noop" and granted.changed else action,
            status=status or result.status,
            entra_id=result.entra_id,
            salesforce_id=op.salesforce_id if op else None,
            modified_properties=tuple(sorted(op.changes)) if op else (),
            error_code=result.error.code if result.error else None,
            reason=op.reason if op else "",
            message_id=message_id,
            duration_ms=result.duration_ms,
            permission_sets_added=granted.added,
            permission_sets_removed=granted.removed,
        ).emit()


def _in_doubt(w: _Work, error: ProvisioningError) -> ProvisioningError:
    """DUPLICATE_USERNAME for the Username an earlier, unanswered create of this user used: that
    create may have landed after this attempt looked. Retried (the next attempt finds and links it);
    the intent is settled now, so a username truly taken elsewhere fails permanently next time."""
    if error.code == "DUPLICATE_USERNAME" and w.intent and w.operation and \
            str(w.operation.record.get("Username", "")).casefold() == w.intent.casefold():
        return TransientError("CreateInDoubt", "the username is taken, possibly by this user's earlier create "
                              "whose answer was lost; looking again", system="salesforce")
    return error


def _retryable(error: ProvisioningError) -> bool:
    """Rescheduled rather than dead-lettered: transient, or parked until a licence frees up."""
    return error.transient or is_parked(error)
