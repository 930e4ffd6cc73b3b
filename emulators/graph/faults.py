"""Fault injection for the Graph emulator: throttling, outages, HTML gateway pages, latency, and lists
answered empty (200 with no items, as a lagging replica may answer just after an outage).

A rule matches a request when its pattern (fnmatch) matches the route name (e.g. "users.delta",
"servicePrincipals.*") or the normalised path (e.g. "/v1.0/users/*/sendMail"). It fires for the next
`times` matching requests, or at random with probability `rate` (seeded, so runs repeat), or always."""
from __future__ import annotations

import fnmatch
import random
import threading
from collections import Counter
from dataclasses import dataclass

_DEFAULT_CODES = {
    429: ("TooManyRequests", "Please retry again later."),
    503: ("serviceNotAvailable", "The service is temporarily unavailable. Please retry after some time."),
    504: ("gatewayTimeout", "The gateway did not receive a timely response."),
    502: ("badGateway", "Bad gateway."),
    500: ("generalException", "An unexpected error occurred."),
}


@dataclass(slots=True)
class FaultRule:
    pattern: str
    status: int
    times: int | None = None
    rate: float | None = None
    retry_after: int | None = None
    html: bool = False
    empty: bool = False  # 200 with an empty `value` instead of an error

    def matches(self, route: str, path: str) -> bool:
        return fnmatch.fnmatchcase(route, self.pattern) or fnmatch.fnmatchcase(path, self.pattern)

    @property
    def error_code(self) -> str:
        return _DEFAULT_CODES.get(self.status, (f"HTTP{self.status}", ""))[0]

    @property
    def error_message(self) -> str:
        return _DEFAULT_CODES.get(self.status, ("", f"Injected failure {self.status}."))[1]


class FaultPlan:
    def __init__(self, seed: int = 0) -> None:
        self._rules: list[FaultRule] = []
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.latency: float = 0.0  # seconds added to every request
        self.injected: Counter[int] = Counter()  # status → responses injected

    def add(
        self,
        pattern: str,
        status: int,
        *,
        times: int | None = None,
        rate: float | None = None,
        retry_after: int | None = None,
        html: bool | None = None,
    ) -> FaultRule:
        """Inject `status` for matching requests. retry_after (whole seconds, as Graph sends it) adds
        a Retry-After header; html (default: True for 502) sends an HTML page instead of JSON."""
        if times is not None and rate is not None:
            raise ValueError("give times or rate, not both")
        if rate is not None and not 0 < rate <= 1:
            raise ValueError("rate must be in (0, 1]")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1")
        rule = FaultRule(pattern, status, times, rate, retry_after, status == 502 if html is None else html)
        with self._lock:
            self._rules.append(rule)
        return rule

    def add_empty(self, pattern: str, *, times: int | None = None) -> FaultRule:
        """Answer matching list requests with 200 and no items (and no nextLink)."""
        if times is not None and times < 1:
            raise ValueError("times must be at least 1")
        rule = FaultRule(pattern, 200, times, empty=True)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
        self.latency = 0.0

    def take(self, route: str, path: str) -> FaultRule | None:
        """The rule that fires for this request, consuming one of its `times`."""
        with self._lock:
            for rule in self._rules:
                if not rule.matches(route, path):
                    continue
                if rule.rate is not None and self._rng.random() >= rule.rate:
                    continue
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times == 0:
                        self._rules.remove(rule)
                self.injected[rule.status] += 1
                return rule
            return None
