"""The quarantine's rules that the end-to-end tests cannot reach cheaply: a refused alert is owed and sent
with a later batch, exactly one message probes at a time, deferrals wait for the probe, and the held-
deactivations alert shares the same sender. Real SQLite state with a manual clock; the mailer and the
queue are small fakes of their ports that record what they were given."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Iterator, Sequence

import pytest

from shared.adapters.state_sqlite import SqliteStateStore
from shared.core.errors import TransientError, salesforce_error
from shared.core.messages import ReconcileMessage
from shared.core.planning import Operation
from shared.services.admin_mail import AdminMail
from shared.services.quarantine import Quarantine, QuarantineConfig
from shared.services.safety import DeletionGuard, SafetyConfig

DOWN = salesforce_error(503, "SERVER_UNAVAILABLE", "down")
CONFIG = QuarantineConfig(failure_ratio=0.4, min_operations=4, window_seconds=900, backoff_base_seconds=60,
                          backoff_max_seconds=3600)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 5, 1, 9, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Mailbox:
    """A Mailer that accepts, or refuses while `refusing` is set."""

    refusing: bool = False
    accepted: list[str] = field(default_factory=list)

    async def send_mail(self, sender: str, to: Sequence[str], subject: str, body: str) -> None:
        if self.refusing:
            raise RuntimeError("mailbox unavailable")
        self.accepted.append(subject)


@dataclass
class Queue:
    sent: list[tuple[ReconcileMessage, float]] = field(default_factory=list)

    async def send(self, messages: Sequence[ReconcileMessage], *, delay_seconds: float = 0) -> None:
        self.sent += [(m, delay_seconds) for m in messages]


@dataclass(frozen=True)
class Result:
    entra_id: str
    operation: Operation | None
    error: Exception | None = None


def failed(n: int) -> list[Result]:
    """n users whose n separate Salesforce calls failed (one failed call shared by a batch counts once)."""
    return [Result(f"0000000{i}-0000-0000-0000-000000000000", Operation("update", "x"),
                   salesforce_error(503, "SERVER_UNAVAILABLE", "down")) for i in range(n)]


def succeeded(entra_id: str) -> list[Result]:
    return [Result(entra_id, Operation("update", entra_id))]


def message(n: int) -> ReconcileMessage:
    return ReconcileMessage.new(f"0000000{n}-0000-0000-0000-000000000000", "delta", "cursor")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def state(clock: Clock) -> Iterator[SqliteStateStore]:
    with SqliteStateStore(":memory:", clock=clock) as store:
        yield store


@pytest.fixture
def mailbox() -> Mailbox:
    return Mailbox()


@pytest.fixture
def queue() -> Queue:
    return Queue()


@pytest.fixture
def quarantine(state, mailbox, queue, clock) -> Quarantine:
    return Quarantine(state, AdminMail(state, mailbox, "alerts@contoso.com", ["admins@contoso.com"]), queue, CONFIG,
                      now=clock)


async def test_a_refused_alert_is_owed_and_sent_once_with_a_later_batch(quarantine, state, mailbox, clock):
    mailbox.refusing = True
    await quarantine.observe(failed(4))
    status = state.get_quarantine()
    assert status is not None and status.active and status.notified_reason == "" and mailbox.accepted == []

    mailbox.refusing = False
    await quarantine.observe([Result("ignored", None)])  # a batch that says nothing about Salesforce
    await quarantine.observe([Result("ignored", None)])
    assert mailbox.accepted == ["Salesforce provisioning quarantined: most Salesforce operations are failing"]

    # The lift email refused: the record stays, lifted, until a later batch gets it through.
    mailbox.refusing = True
    await quarantine.observe(succeeded(message(1).entra_id))
    lifted = state.get_quarantine()
    assert lifted is not None and not lifted.active and lifted.lifted_by == "probe"
    mailbox.refusing = False
    await quarantine.observe([Result("ignored", None)])
    assert state.get_quarantine() is None and mailbox.accepted[-1] == "Salesforce provisioning: quarantine lifted"
    assert len(mailbox.accepted) == 2


async def test_one_message_probes_at_a_time_and_the_others_wait_for_it(quarantine, state, queue, clock):
    await quarantine.observe(failed(5))
    first, second, third = message(1), message(2), message(3)
    assert not await quarantine.admit(first)  # before the first probe time: deferred
    [(deferred, delay)] = queue.sent
    assert (deferred.attempt, deferred.deferrals) == (0, 1) and 48 <= delay <= 72
    assert deferred.message_id == first.message_id + "/deferred1"

    clock.advance(61)
    assert await quarantine.admit(second)  # the probe
    assert not await quarantine.admit(third)  # the probe lease is taken
    await quarantine.observe([Result(second.entra_id, Operation("update", "x"), DOWN)])
    status = state.get_quarantine()
    assert status is not None and status.probes == 1
    assert datetime.fromisoformat(status.probe_at) == clock.now + timedelta(seconds=120)

    # A deferred message waits at least until the next probe, and longer the more often it was deferred.
    queue.sent.clear()
    assert not await quarantine.admit(deferred.defer().defer())
    [(again, delay)] = queue.sent
    assert again.deferrals == 4 and 480 * 0.8 <= delay <= 480 * 1.2  # 60 s doubled three times, with jitter

    clock.advance(121)
    assert await quarantine.admit(third)  # the lease was released with the failed probe's batch
    await quarantine.observe(succeeded(third.entra_id))
    assert state.get_quarantine() is None
    assert state.record_outcomes(0, 0, 900) == (0, 0)  # the window restarted
    assert await quarantine.admit(first)  # healthy again: no deferral
    assert quarantine.enqueue_delay() == 0


async def test_failures_that_do_not_count_never_quarantine(quarantine, state):
    taken = salesforce_error(None, "DUPLICATE_USERNAME", "taken")
    busy = TransientError("UserBusy", "another worker", system="lease")
    await quarantine.observe([Result(f"u{i}", Operation("create", "x"), taken) for i in range(10)]
                             + [Result(f"b{i}", None, busy) for i in range(10)])
    assert state.get_quarantine() is None
    assert state.record_outcomes(0, 0, 900) == (0, 0)


async def test_the_held_deactivations_alert_uses_the_same_sender(state, mailbox, queue, clock):
    guard = DeletionGuard(state, AdminMail(state, mailbox, "alerts@contoso.com", ["admins@contoso.com"]), queue,
                          SafetyConfig(threshold=1, threshold_percent=0), now=clock)
    leavers = [Operation("deactivate", f"0000000{i}-0000-0000-0000-000000000000", f"00500000000000{i}AAA",
                         {"IsActive": (True, False)}, {"IsActive": False}, "disabled in Entra") for i in range(3)]
    mailbox.refusing = True
    screening = await guard.screen(leavers)
    assert {type(v).__name__ for v in screening.replacements.values()} == {"TransientError"}  # retried, not lost
    mailbox.refusing = False
    await guard.screen(leavers[1:])
    assert mailbox.accepted == ["Salesforce provisioning: 2 deactivations held for your decision"]
