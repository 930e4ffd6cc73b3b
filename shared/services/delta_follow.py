"""Following a Graph delta query (users/delta, groups/delta) to its new deltaLink, page by page.

Each page's messages are sent *before* its link is stored as the cursor: a crash in between re-sends
(dropped by duplicate detection, or harmless) and never loses a change, and a long first round that
times out resumes from its last stored page instead of starting over."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Awaitable, Callable, Protocol, TypeVar

from ..core.errors import DeltaTokenExpired
from ..core.messages import Reason, ReconcileMessage
from ..core.ports import ReconcileQueue, StateStore


class _Page(Protocol):
    @property
    def next_link(self) -> str | None: ...

    @property
    def delta_link(self) -> str | None: ...


P = TypeVar("P", bound=_Page)


async def follow_delta(
    cursor: str,
    link: str | None,
    fetch: Callable[[str | None], Awaitable[P]],
    user_ids: Callable[[P], Awaitable[set[str]]],
    *,
    reason: Reason,
    scope: set[str],
    sent: set[str],
    queue: ReconcileQueue,
    state: StateStore,
) -> tuple[int, int]:
    """Follow `cursor` from `link` (None: a first round) to its new deltaLink, enqueuing the users of each
    page that are in `scope` and not yet in `sent` (which grows); returns (users enqueued, pages read)."""
    # Message ids derive from the page's link; a first round's from the cursor and the minute, so a first
    # round re-sent soon after a crash repeats its ids and Service Bus drops the copies.
    first_cause = f"{cursor}:first:{datetime.now(timezone.utc):%Y%m%dT%H%M}"
    enqueued = pages = 0
    while True:
        page = await fetch(link)
        pages += 1
        ids = sorted((await user_ids(page) & scope) - sent)
        cause = link or first_cause
        await queue.send([ReconcileMessage.new(u, reason, cause) for u in ids])
        sent.update(ids)
        enqueued += len(ids)
        link = page.next_link or page.delta_link
        if link is None:
            raise DeltaTokenExpired(f"{cursor} delta page had neither a nextLink nor a deltaLink")
        state.set_cursor(cursor, link)
        if page.next_link is None:
            return enqueued, pages
