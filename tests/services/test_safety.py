"""The deletion threshold's percentage against the state store's count of active links."""
from __future__ import annotations

import uuid

from shared.adapters.state_sqlite import SqliteStateStore
from shared.core.models import UserLink
from shared.core.planning import Operation
from shared.services.admin_mail import AdminMail
from shared.services.safety import DeletionGuard, SafetyConfig


class Outbox:
    """Mail the guard sent (it sends one only when it holds)."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send_mail(self, sender: str, recipients, subject: str, body: str) -> None:
        self.sent.append(subject)


def link_users(state: SqliteStateStore, count: int) -> None:
    for n in range(count):
        state.put_link(UserLink(str(uuid.uuid4()), f"005{n:012d}AAA", last_outcome="create"))


def deactivations(count: int) -> list[Operation]:
    return [Operation("deactivate", str(uuid.uuid4()), f"005{n:012d}AAA", {"IsActive": (True, False)},
                      {"Id": f"005{n:012d}AAA", "IsActive": False}) for n in range(count)]


async def test_a_count_of_active_links_read_early_in_a_first_sync_never_holds_later_leavers():
    state, outbox = SqliteStateStore(":memory:"), Outbox()
    mail = AdminMail(state, outbox, "app@contoso.com", ["admin@contoso.com"])
    guard = DeletionGuard(state, mail, queue=None, config=SafetyConfig(threshold=0, threshold_percent=20))  # type: ignore[arg-type]
    link_users(state, 10)
    assert (await guard.screen(deactivations(1))).replacements == {}  # 1 of 10 links: allowed; the count is kept
    link_users(state, 90)  # the first sync goes on: 100 active links, 20% is 20 deactivations
    screening = await guard.screen(deactivations(5))
    assert screening.replacements == {} and state.held_deactivations() == [] and outbox.sent == []
    screening = await guard.screen(deactivations(20))  # beyond 20% of the fresh count: held
    assert len(state.held_deactivations()) == 6 and len(outbox.sent) == 1
