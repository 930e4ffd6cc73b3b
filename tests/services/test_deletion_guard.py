"""The deletion threshold across windows, on the SQLite state store with a clock the test moves: while
held deactivations await a decision, a fresh window lets nothing more through."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Sequence

from shared.adapters.state_sqlite import SqliteStateStore
from shared.core.messages import ReconcileMessage
from shared.core.planning import Operation
from shared.services.admin_mail import AdminMail
from shared.services.safety import DeletionGuard, SafetyConfig

WINDOW = 3600.0


class Outbox:
    def __init__(self) -> None:
        self.mails: list[str] = []

    async def send_mail(self, sender: str, to: Sequence[str], subject: str, body: str) -> None:
        self.mails.append(subject)


class Queue:
    def __init__(self) -> None:
        self.sent: list[ReconcileMessage] = []

    async def send(self, messages: Sequence[ReconcileMessage], delay_seconds: float | None = None) -> None:
        self.sent += messages


def leaving(*entra_ids: str) -> list[Operation]:
    return [Operation("deactivate", i, f"005{i:0>15}", reason="not assigned to the application") for i in entra_ids]


async def test_a_new_window_does_not_release_more_deactivations_while_holds_await_a_decision():
    now = [datetime(2026, 1, 5, 9, tzinfo=timezone.utc)]
    state = SqliteStateStore(":memory:", clock=lambda: now[0])
    outbox, queue = Outbox(), Queue()
    mail = AdminMail(state, outbox, "alerts@contoso.com", ["admins@contoso.com"])
    guard = DeletionGuard(state, mail, queue, SafetyConfig(threshold=2, threshold_percent=0, window_seconds=WINDOW),
                          now=lambda: now[0])

    first = await guard.screen(leaving("a1", "a2", "a3"))
    assert set(first.replacements) == {"a3"} and len(outbox.mails) == 1  # two applied, one held

    now[0] += timedelta(seconds=2 * WINDOW)  # the window has emptied; the hold is still undecided
    later = await guard.screen(leaving("b1"))
    assert later.replacements["b1"].action == "skip"  # type: ignore[union-attr]
    assert "await a decision" in later.replacements["b1"].reason  # type: ignore[union-attr]
    assert {h.entra_id for h in guard.held()} == {"a3", "b1"} and len(outbox.mails) == 1

    # Once the admin has decided, the threshold counts again in its window.
    assert {h.entra_id for h in await guard.release(None)} == {"a3", "b1"}
    assert {m.entra_id for m in queue.sent} == {"a3", "b1"}
    decided = await guard.screen(leaving("a3", "b1", "c1"))
    assert decided.replacements == {} and decided.released == {"a3", "b1"}
