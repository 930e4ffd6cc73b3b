"""Coalesce concurrent reconcile requests into batches (the DataLoader pattern).

The Functions host runs up to maxConcurrentCalls queue messages at once in a worker, each settled on
its own. Each invocation submits its user here and awaits its own result, while the batcher sends the
users of all invocations that arrive within a few milliseconds through one reconcile: one SOQL query
and at most one create and one update call for up to 200 users, instead of two or three calls each."""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Mapping, Sequence, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)
ReconcileBatch = Callable[[Sequence[str], Mapping[str, str]], Awaitable[Mapping[str, T]]]


class Batcher:
    def __init__(self, run: ReconcileBatch, *, max_batch: int = 200, max_wait_seconds: float = 0.05) -> None:
        self._run = run
        self._max_batch = max_batch
        self._max_wait = max_wait_seconds
        self._pending: dict[str, tuple[str, list[asyncio.Future]]] = {}  # entra id → (message id, waiters)
        self._timer: asyncio.TimerHandle | None = None

    async def submit(self, entra_id: str, message_id: str = "") -> T:
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        if entra_id in self._pending:
            self._pending[entra_id][1].append(future)  # the same user twice in a batch: one reconcile
        else:
            self._pending[entra_id] = (message_id, [future])
        if len(self._pending) >= self._max_batch:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._max_wait, self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, {}
        if batch:
            asyncio.ensure_future(self._complete(batch))

    async def _complete(self, batch: dict[str, tuple[str, list[asyncio.Future]]]) -> None:
        message_ids = {user: message_id for user, (message_id, _) in batch.items()}
        try:
            outcomes = await self._run_confined(list(batch), message_ids)
        except BaseException as exc:  # cancelled: every waiter gets it; nothing is left hanging
            outcomes = dict.fromkeys(batch, exc)
        for user, (_, waiters) in batch.items():
            for waiter in waiters:
                if waiter.done():
                    continue
                if isinstance(outcomes[user], BaseException):
                    waiter.set_exception(outcomes[user])
                else:
                    waiter.set_result(outcomes[user])

    async def _run_confined(self, users: list[str], message_ids: Mapping[str, str]) -> dict[str, T | Exception]:
        """Run the batch; if it raises, run each half again on its own, down to single users, so one
        user's failure (a bug its data triggers) reaches only that user's waiters instead of failing
        every message of the batch. Safe because a reconcile is idempotent; a batch that fails as a
        whole (the state store is down) costs 2n-1 runs, one poisoned user about 2·log2(n)."""
        try:
            return dict(await self._run(users, {u: message_ids[u] for u in users}))
        except Exception as exc:
            if len(users) == 1:
                return {users[0]: exc}
            log.warning("a batch of %d users raised %s; reconciling it in halves to confine the failure",
                        len(users), type(exc).__name__)
            middle = len(users) // 2
            return {**await self._run_confined(users[:middle], message_ids),
                    **await self._run_confined(users[middle:], message_ids)}
