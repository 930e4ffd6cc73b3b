"""Coalesce concurrent reconcile requests into batches (the DataLoader pattern).

The Functions host runs up to maxConcurrentCalls queue messages at once in a worker, each settled on
its own. Each invocation submits its user here and awaits its own result, while the batcher sends the
users of all invocations that arrive within a few milliseconds through one reconcile: one SOQL query
and at most one create and one update call for up to 200 users, instead of two or three calls each."""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Mapping, Sequence, TypeVar

T = TypeVar("T")
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
        try:
            results = await self._run(list(batch), {user: message_id for user, (message_id, _) in batch.items()})
        except BaseException as exc:  # every waiter gets the failure; nothing is left hanging
            for _, waiters in batch.values():
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
            return
        for user, (_, waiters) in batch.items():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(results[user])
