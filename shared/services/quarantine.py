"""Quarantine: stop calling Salesforce while Salesforce is the problem, and come back by itself.

Entered when Salesforce rejects the app's credentials (at once) or when more than QUARANTINE_FAILURE_RATIO
of at least QUARANTINE_MIN_OPERATIONS counted Salesforce operations failed within the rolling window
(shared by every worker through the state store; see shared/core/quarantine.py for what counts).

While quarantined:
- a worker does not reconcile a message; it re-sends it for later (`ReconcileMessage.defer`: deferrals
  grow the delay, attempts are untouched, so nothing is dead-lettered because of quarantine) and
  completes it. A counted failure of a message already in flight is deferred the same way;
- one message at a time, once the next probe time is reached, goes through as the *probe* (a lease in
  the state store). Any successful Salesforce operation lifts the quarantine; a failed one moves the
  next probe further out (QUARANTINE_BACKOFF_BASE_SECONDS doubling up to ..._MAX_SECONDS);
- the detect timer keeps reading Graph and advancing its cursor, but its messages are scheduled for
  after the next probe (`DeferringQueue`), so changes are not lost and do not pile onto Salesforce.

One email when quarantine starts, another only when its reason changes, one when it lifts; an email that
is not accepted is tried again on the next batch (the record says which reason was reported)."""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Protocol, Sequence

from ..core.errors import ProvisioningError
from ..core.messages import ReconcileMessage
from ..core.ports import ReconcileQueue, StateStore
from ..core.quarantine import (
    OutcomeCounts,
    QuarantineReason,
    QuarantineStatus,
    backoff_seconds,
    breached,
    classify,
    count_outcomes,
)
from . import metrics
from .admin_mail import AdminMail

log = logging.getLogger(__name__)

PROBE_LEASE = "quarantine/probe"
NOTICE_LEASE = "quarantine/notice"


@dataclass(frozen=True, slots=True)
class QuarantineConfig:
    failure_ratio: float = 0.4  # 0: only credential failures quarantine
    min_operations: int = 20
    window_seconds: float = 900.0
    backoff_base_seconds: float = 60.0
    backoff_max_seconds: float = 3600.0
    probe_lease_seconds: float = 120.0  # a probe whose worker died is given up after this


class ReconcileOutcome(Protocol):
    """What a reconciled user says about Salesforce (provision.UserResult has these)."""

    @property
    def entra_id(self) -> str: ...

    @property
    def operation(self) -> object | None: ...

    @property
    def error(self) -> ProvisioningError | None: ...


class Quarantine:
    def __init__(
        self,
        state: StateStore,
        mail: AdminMail,
        queue: ReconcileQueue,
        config: QuarantineConfig = QuarantineConfig(),
        *,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        self._state = state
        self._mail = mail
        self._queue = queue
        self.config = config
        self._now = now
        self._probing: dict[str, str] = {}  # Entra id → probe lease owner, for probes this worker runs

    # ---- the worker's side --------------------------------------------------------------------

    def status(self) -> QuarantineStatus | None:
        """The quarantine record: active, or lifted with its email still owed; None when healthy."""
        return self._state.get_quarantine()

    async def admit(self, message: ReconcileMessage) -> bool:
        """True: reconcile the message now (no quarantine, or it is the probe). False: it was deferred."""
        status = self._state.get_quarantine()
        if status is None or not status.active:
            return True
        if self._now() >= datetime.fromisoformat(status.probe_at):
            owner = uuid.uuid4().hex
            if self._state.claim(PROBE_LEASE, owner, self.config.probe_lease_seconds):
                self._probing[message.entra_id] = owner
                log.warning("quarantined (%s): entra=%s probes Salesforce", status.reason, message.entra_id)
                return True
        await self._defer(message, status)
        return False

    async def defer_failed(self, message: ReconcileMessage, error: ProvisioningError) -> bool:
        """While quarantined, a failure that counts against Salesforce is deferred rather than retried
        (which would use up attempts) or dead-lettered. True when it was."""
        if classify(None, error) not in ("failure", "auth"):
            return False
        status = self._state.get_quarantine()
        if status is None or not status.active:
            return False
        await self._defer(message, status)
        return True

    async def _defer(self, message: ReconcileMessage, status: QuarantineStatus) -> None:
        until_probe = (datetime.fromisoformat(status.probe_at) - self._now()).total_seconds()
        base, most = self.config.backoff_base_seconds, self.config.backoff_max_seconds
        delay = max(until_probe, backoff_seconds(message.deferrals, base, most))
        await self._queue.send([message.defer()], delay_seconds=delay)
        metrics.record_quarantine_deferral(status.reason)
        log.info("quarantined (%s): entra=%s deferred %.0f s (deferral %d)", status.reason, message.entra_id, delay,
                 message.deferrals + 1)

    def enqueue_delay(self) -> float:
        """How long new messages should wait: until shortly after the next probe while quarantined."""
        status = self._state.get_quarantine()
        if status is None or not status.active:
            return 0.0
        until_probe = (datetime.fromisoformat(status.probe_at) - self._now()).total_seconds()
        return max(0.0, until_probe) + self.config.backoff_base_seconds

    async def observe(self, results: Iterable[ReconcileOutcome]) -> None:
        """Take one reconciled batch as evidence; enter, keep or lift quarantine. Never raises: this
        bookkeeping must not fail the batch's messages."""
        results = list(results)
        try:
            await self._observe(count_outcomes(
                (getattr(r.operation, "action", None), r.error) for r in results))
        except Exception as exc:  # the state store or mail being down is logged; provisioning goes on
            log.error("quarantine bookkeeping failed: %s", getattr(exc, "code", type(exc).__name__))
        finally:
            for r in results:
                owner = self._probing.pop(r.entra_id, None)
                if owner is not None:
                    self._state.release(PROBE_LEASE, owner)

    async def _observe(self, counts: OutcomeCounts) -> None:
        status = self._state.get_quarantine()
        if status is not None and status.active:
            if counts.succeeded:
                await self._lift(status, "probe")
            elif counts.failed:
                await self._probe_failed(status, counts)
            elif status.notified_reason != status.reason:
                await self._notify_start()
            return
        if status is not None:
            await self._finish_lift()  # lifted earlier; its email was not accepted yet
        if not counts.counted:
            return
        succeeded, failed = self._state.record_outcomes(counts.succeeded, counts.failed, self.config.window_seconds)
        if counts.auth_code is not None:
            await self._enter("auth", counts.auth_code, f"Salesforce rejected the app's credentials ({counts.auth_code})")
        elif breached(succeeded, failed, self.config.failure_ratio, self.config.min_operations):
            minutes = self.config.window_seconds / 60
            await self._enter("failure_ratio", counts.top_code or "", f"{failed} of {succeeded + failed} Salesforce "
                              f"operations failed in the last {minutes:g} minutes, most with {counts.top_code}")

    # ---- transitions --------------------------------------------------------------------------

    async def _enter(self, reason: QuarantineReason, code: str, detail: str) -> None:
        current = self._state.get_quarantine()
        if current is not None and current.active and current.reason == reason:
            return  # another worker got there first
        now = self._now()
        was_active = current is not None and current.active
        status = QuarantineStatus(
            reason=reason, detail=detail, error_code=code,
            since=current.since if was_active and current else now.isoformat(),
            probe_at=(now + timedelta(seconds=self.config.backoff_base_seconds)).isoformat(),
            probes=current.probes if was_active and current else 0,
            notified_reason=current.notified_reason if current else "",
        )
        self._state.put_quarantine(status)
        event = "reason_changed" if was_active else "entered"
        log.error("quarantine %s: %s (%s); Salesforce is left alone until a probe succeeds", event, reason, code,
                  extra={"quarantine_event": event, "quarantine_reason": reason, "error_code": code})
        metrics.record_quarantine_transition(event, reason)
        await self._notify_start()

    async def _probe_failed(self, status: QuarantineStatus, counts: OutcomeCounts) -> None:
        reason: QuarantineReason = "auth" if counts.auth_code else "failure_ratio"
        if reason != status.reason:
            detail = (f"Salesforce rejected the app's credentials ({counts.auth_code})" if reason == "auth"
                      else f"Salesforce answers again but fails: {counts.top_code}")
            await self._enter(reason, counts.top_code or "", detail)
            status = self._state.get_quarantine() or status
        probes = status.probes + 1
        wait = backoff_seconds(probes, self.config.backoff_base_seconds, self.config.backoff_max_seconds, jitter=False)
        self._state.put_quarantine(replace(status, probes=probes,
                                           probe_at=(self._now() + timedelta(seconds=wait)).isoformat()))
        log.warning("quarantine probe %d failed (%s); next probe in %.0f s", probes, counts.top_code, wait)
        if status.notified_reason != status.reason:
            await self._notify_start()

    async def _lift(self, status: QuarantineStatus, by: str) -> None:
        self._state.put_quarantine(replace(status, active=False, lifted_at=self._now().isoformat(), lifted_by=by))
        self._state.clear_outcomes()  # the failures that caused it must not quarantine again
        log.warning("quarantine lifted (%s) by %s", status.reason, by,
                    extra={"quarantine_event": "lifted", "quarantine_reason": status.reason, "error_code": status.error_code})
        metrics.record_quarantine_transition("lifted", status.reason)
        await self._finish_lift()

    async def clear(self) -> QuarantineStatus | None:
        """An admin lifts the quarantine (python -m cli quarantine --clear); the record as it was."""
        status = self._state.get_quarantine()
        if status is not None and status.active:
            await self._lift(status, "admin")
        elif status is not None:
            await self._finish_lift()
        return status

    # ---- emails -------------------------------------------------------------------------------

    async def _notify_start(self) -> None:
        """Report the quarantine's reason unless that reason was reported already; one worker at a time."""
        await self._mail.exclusively(NOTICE_LEASE, self._send_start)

    async def _send_start(self) -> None:
        status = self._state.get_quarantine()
        if status is None or not status.active or status.notified_reason == status.reason:
            return
        subject, body = compose_start_notice(status, self.config)
        if await self._mail.send(subject, body, what=f"quarantine ({status.reason})"):
            latest = self._state.get_quarantine()
            if latest is not None and latest.active and latest.reason == status.reason:
                self._state.put_quarantine(replace(latest, notified_reason=status.reason))

    async def _finish_lift(self) -> None:
        """Send the lift email if the start was reported, then forget the record."""
        await self._mail.exclusively(NOTICE_LEASE, self._send_lift)

    async def _send_lift(self) -> None:
        status = self._state.get_quarantine()
        if status is None or status.active:
            return
        if status.notified_reason and not await self._mail.send(*compose_lift_notice(status), what="quarantine lifted"):
            return  # kept: the next batch tries again
        latest = self._state.get_quarantine()
        if latest is not None and not latest.active:
            self._state.put_quarantine(None)


class DeferringQueue:
    """The detect timer's queue: while quarantined, messages are scheduled for just after the next
    probe instead of now. The cursor still advances (the messages are in Service Bus), so nothing is
    lost and Graph is not read twice."""

    def __init__(self, queue: ReconcileQueue, quarantine: Quarantine) -> None:
        self._queue = queue
        self._quarantine = quarantine

    async def send(self, messages: Sequence[ReconcileMessage], *, delay_seconds: float = 0) -> None:
        if messages:
            wait = self._quarantine.enqueue_delay()
            if wait > delay_seconds:
                log.warning("quarantined: %d messages scheduled %.0f s out", len(messages), wait)
                delay_seconds = wait
        await self._queue.send(messages, delay_seconds=delay_seconds)


_REASON_TEXT = {
    "auth": "Salesforce rejected the app's credentials",
    "failure_ratio": "most Salesforce operations are failing",
}
_ADVICE = {
    "auth": "Check the integration user (active, not locked, password or certificate not expired), the connected "
            "app (consumer key, pre-authorised profile) and the SALESFORCE_* settings, then run `python -m cli check`.",
    "failure_ratio": "Check Salesforce's status (status.salesforce.com) and the org's API usage (REQUEST_LIMIT_EXCEEDED "
                     "means the daily API limit is spent); the error code above says which.",
}


def compose_start_notice(status: QuarantineStatus, config: QuarantineConfig) -> tuple[str, str]:
    subject = f"Salesforce provisioning quarantined: {_REASON_TEXT[status.reason]}"
    lines = [
        f"Provisioning to Salesforce is quarantined since {status.since}: {status.detail}.",
        f"Error code: {status.error_code or 'none'}.",
        "",
        "While quarantined the app does not call Salesforce. Changes in Entra are still read and kept as queue "
        "messages that wait; nothing is lost and nothing is dead-lettered because of the quarantine.",
        f"Once at a time the app tries one user (a probe), first after {config.backoff_base_seconds:g} s, then less "
        f"often, at most {config.backoff_max_seconds:g} s apart. The first success lifts the quarantine and you get "
        "another email.",
        "",
        f"What to do: {_ADVICE[status.reason]}",
        "",
        "See the state:       python -m cli quarantine",
        "Lift it yourself:    python -m cli quarantine --clear   (once the cause is fixed)",
        "",
        "You get this email once per quarantine, and again only if its reason changes.",
    ]
    return subject, "\n".join(lines)


def compose_lift_notice(status: QuarantineStatus) -> tuple[str, str]:
    by = "an admin cleared it" if status.lifted_by == "admin" else "a probe succeeded"
    subject = "Salesforce provisioning: quarantine lifted"
    body = (f"The quarantine that started at {status.since} ({_REASON_TEXT[status.reason]}, {status.error_code}) was "
            f"lifted at {status.lifted_at}: {by}. Deferred changes are being provisioned again.")
    return subject, body
