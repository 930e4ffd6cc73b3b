"""A value read from an outside system on first use and kept for the worker's life, such as the org's
profiles. `get(refresh=True)` reads again, unless the last read is younger than `min_age_seconds`: a
caller that meets a name it does not know (a profile created since) refreshes once, and a burst of
such misses costs one read, not one per user."""
from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable, Generic, TypeVar

T = TypeVar("T")

MIN_REFRESH_AGE_SECONDS = 60.0


class CachedRead(Generic[T]):
    def __init__(self, read: Callable[[], Awaitable[T]], *, min_age_seconds: float = MIN_REFRESH_AGE_SECONDS) -> None:
        self._read = read
        self._min_age = min_age_seconds
        self._value: T | None = None
        self._read_at = float("-inf")
        self._lock = asyncio.Lock()

    async def get(self, *, refresh: bool = False) -> T:
        async with self._lock:
            if self._value is None or (refresh and time.monotonic() - self._read_at >= self._min_age):
                self._value = await self._read()
                self._read_at = time.monotonic()
            return self._value
