"""The error taxonomy. Every failure is classified once, here: transient (retry with backoff) or
permanent (dead-letter at once). Adapters turn SDK errors into these with `salesforce_error` and
`graph_error`, so no other layer inspects HTTP statuses or vendor codes."""
from __future__ import annotations

from typing import Iterable


class ProvisioningError(Exception):
    """Base of all classified failures. `code` is the vendor's code (e.g. DUPLICATE_USERNAME)."""

    transient: bool = False

    def __init__(
        self,
        code: str,
        message: str,
        *,
        system: str = "",
        retry_after: float | None = None,
        fields: Iterable[str] = (),
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.system = system
        self.retry_after = retry_after
        self.fields = tuple(fields)


class TransientError(ProvisioningError):
    """Worth retrying later with backoff (honouring retry_after when set)."""

    transient = True


class PermanentError(ProvisioningError):
    """Retrying the same input cannot succeed; needs a person. Dead-lettered at once."""


class SessionExpired(TransientError):
    """Salesforce INVALID_SESSION_ID: re-authenticate once and retry."""


class InvalidMessage(PermanentError):
    """A queue message that cannot be understood."""

    def __init__(self, message: str) -> None:
        super().__init__("InvalidMessage", message, system="queue")


class ConfigurationError(Exception):
    """Settings or mapping that cannot work; raised at start with every problem listed."""


# Salesforce errorCode/statusCode values that a retry can fix. Everything else a Salesforce write
# returns is permanent: the same record would fail the same way.
SALESFORCE_TRANSIENT_CODES = frozenset(
    {
        "UNABLE_TO_LOCK_ROW",
        "REQUEST_LIMIT_EXCEEDED",
        "SERVER_UNAVAILABLE",
        "QUERY_TIMEOUT",
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        # Not Salesforce's: this app's code for an answer it cannot read (an HTML page with a 200, truncated
        # or empty JSON, a shape the API never sends), which a proxy or an incident produces, not the input.
        "UNEXPECTED_RESPONSE",
    }
)

# Graph error codes that a retry can fix even when the status alone would not say so.
GRAPH_TRANSIENT_CODES = frozenset({"TooManyRequests", "serviceNotAvailable", "generalException", "timeout"})


def salesforce_error(
    status: int | None, code: str | None, message: str, fields: Iterable[str] = ()
) -> ProvisioningError:
    """Classify one Salesforce failure. `status` is None for a per-record error of a 200 collection
    response and for a network failure (code then names it, e.g. 'Timeout')."""
    code = code or (f"HTTP_{status}" if status else "NETWORK_ERROR")
    if code == "INVALID_SESSION_ID" or status == 401:
        return SessionExpired(code, message, system="salesforce", fields=fields)
    if code in SALESFORCE_TRANSIENT_CODES or status is None and code in {"NETWORK_ERROR", "Timeout"}:
        return TransientError(code, message, system="salesforce", fields=fields)
    if status is not None and (status >= 500 or status in (408, 429)):
        return TransientError(code, message, system="salesforce", fields=fields)
    return PermanentError(code, message, system="salesforce", fields=fields)


def graph_error(status: int | None, code: str | None, message: str, retry_after: float | None = None) -> ProvisioningError:
    """Classify one Graph failure. 429/5xx and network failures are transient; 4xx are permanent."""
    code = code or (f"HTTP_{status}" if status else "NETWORK_ERROR")
    if status is None or status >= 500 or status in (408, 429) or code in GRAPH_TRANSIENT_CODES:
        return TransientError(code, message, system="graph", retry_after=retry_after)
    return PermanentError(code, message, system="graph", retry_after=retry_after)


class DeltaTokenExpired(Exception):
    """The stored deltaLink or nextLink is no longer valid (400 syncStateNotFound / resyncRequired /
    Directory_ExpiredPageToken, or 410 Gone): start a full sync."""
