"""Test knobs of the emulated org: injected faults, raw answers, per-call latency, and API call counters."""
from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

# kind → (HTTP status, errorCode, message); "html503" and "hang" are handled by the server.
FAULT_KINDS: dict[str, tuple[int, str, str]] = {
    "lock": (400, "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record or 1 records: 005000000000001"),
    "limit": (403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
    "unavailable": (503, "SERVER_UNAVAILABLE", "Server too busy"),
    "html503": (503, "", "<html><head><title>Service Unavailable</title></head>"
                "<body><h1>We are down for maintenance.</h1></body></html>"),
    "hang": (0, "", ""),
}


@dataclass(frozen=True)
class RawResponse:
    """An answer sent byte for byte instead of the API's, as a gateway or a broken proxy would: an HTML
    502 page, truncated JSON, an empty body, a wrong content type, a JSON shape the API never sends."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"


class Faults:
    """Which calls fail and how. `fail_next` queues faults for the next calls; `fail_rate` fails a random
    share of calls (seeded, so a run is repeatable); `respond_raw` answers the next calls (of one kind,
    e.g. "query" or "composite_create", or any) with a raw response and leaves the org untouched;
    `latency` delays every call; a "hang" fault waits `hang_seconds` (longer than the client's timeout)
    before answering. `injected` counts what fired by kind (and "session_expired" for requests refused
    by `EmulatedOrg.expire_session`). `after_write`, when set, is called once a write was applied and
    before its answer is sent: the moment a client crash leaves Salesforce changed but the client none
    the wiser."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queued: list[tuple[str, bool]] = []  # (kind, writes only)
        self._raw: list[tuple[str | None, RawResponse]] = []
        self._rates: dict[str, float] = {}
        self._random = random.Random(0)
        self.latency = 0.0
        self.hang_seconds = 30.0
        self.injected: Counter[str] = Counter()
        self.after_write: Callable[[], None] | None = None

    def fail_next(self, kind: str, count: int = 1, *, writes_only: bool = False) -> None:
        """Fail the next `count` calls (with writes_only, the next POST/PATCH/DELETE calls) with `kind`."""
        _check_kind(kind)
        with self._lock:
            self._queued.extend([(kind, writes_only)] * count)

    def fail_rate(self, kind: str, rate: float, seed: int = 0) -> None:
        _check_kind(kind)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be within 0..1, got {rate}")
        with self._lock:
            self._rates[kind] = rate
            self._random.seed(seed)

    def respond_raw(self, response: RawResponse, *, kind: str | None = None, count: int = 1) -> None:
        with self._lock:
            self._raw.extend([(kind, response)] * count)

    def clear(self) -> None:
        with self._lock:
            self._queued.clear()
            self._rates.clear()
            self._raw.clear()
        self.latency = 0.0
        self.after_write = None

    def pending_raw(self) -> int:
        with self._lock:
            return len(self._raw)

    def draw_raw(self, kind: str) -> RawResponse | None:
        """The raw answer queued for this call (the first one for its kind or for any kind), if any."""
        with self._lock:
            for index, (wanted, response) in enumerate(self._raw):
                if wanted is None or wanted == kind:
                    del self._raw[index]
                    return response
        return None

    def draw(self, is_write: bool = False) -> str | None:
        """The fault for the call being served now, if any."""
        with self._lock:
            queued = next((i for i, (_, writes_only) in enumerate(self._queued) if is_write or not writes_only), None)
            if queued is not None:
                kind: str | None = self._queued.pop(queued)[0]
            else:
                kind = next((k for k, rate in self._rates.items() if self._random.random() < rate), None)
            if kind:
                self.injected[kind] += 1
            return kind

    def record(self, kind: str) -> None:
        with self._lock:
            self.injected[kind] += 1


def _check_kind(kind: str) -> None:
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; one of {sorted(FAULT_KINDS)}")


@dataclass
class CallCounter:
    """Every API request the emulator served: total, by kind (query, query_more, composite_create, ...)
    and writes (POST/PATCH/DELETE). Thread-safe; `snapshot()` for assertions."""

    total: int = 0
    writes: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, kind: str, is_write: bool) -> int:
        with self._lock:
            self.total += 1
            self.writes += int(is_write)
            self.by_kind[kind] += 1
            return self.total

    def reset(self) -> None:
        with self._lock:
            self.total = self.writes = 0
            self.by_kind.clear()

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {"total": self.total, "writes": self.writes, "by_kind": dict(self.by_kind)}
