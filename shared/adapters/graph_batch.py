"""Graph JSON batching: up to 20 reads (GETs, and read-only POST actions such as checkMemberGroups) in
one `POST /$batch`, with the retries the SDK cannot give.

The envelope goes through the SDK's request adapter (auth, retry and redirect middleware apply to it),
but its middleware never sees the items: each item has its own status, and one answered 429, 503 or
504 is re-sent here in a later, smaller batch after its Retry-After (or the policy's backoff). Item
URLs are relative to the API version, as Graph requires (msgraph-core's BatchRequestContent sends
absolute ones once a client has been used, msgraph-sdk-python issue #1015, so it is not used)."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping

from kiota_abstractions.request_information import RequestInformation

from shared.core.errors import ProvisioningError, graph_error

from .graph_client import MAX_RETRY_AFTER_SECONDS, GraphRetryPolicy

MAX_BATCH_REQUESTS = 20
RETRYABLE_STATUSES = frozenset({429, 503, 504})

SendEnvelope = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class BatchPost:
    """A read-only POST action as a batch item (safe to re-send): its relative URL and JSON body."""

    url: str
    body: Any


BatchRead = str | BatchPost  # a relative URL to GET, or a POST action


@dataclass(frozen=True, slots=True)
class BatchItemResult:
    """One item's answer. `headers` have lower-case names; `body` is the parsed JSON, if any."""

    status: int
    headers: Mapping[str, str]
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def retry_after(self) -> float | None:
        try:
            return max(0.0, float(self.headers["retry-after"]))
        except (KeyError, ValueError):
            return None

    def error(self) -> ProvisioningError:
        error = self.body.get("error") if isinstance(self.body, dict) else None
        if isinstance(error, dict):
            return graph_error(self.status, error.get("code"), str(error.get("message") or ""), self.retry_after)
        return graph_error(self.status, None, "a batch item failed without a Graph error body", self.retry_after)


def relative_url(info: RequestInformation, base_url: str) -> str:
    """The item URL of a request built with the SDK's builders, relative to `base_url` (".../v1.0")."""
    url = info.url
    if url.lower().startswith(base_url.lower()):
        url = url[len(base_url):]
    if not url.startswith("/"):
        raise ValueError(f"a batch item URL must be relative to {base_url}")
    return url


async def get_batch(send: SendEnvelope, urls: Mapping[str, BatchRead], policy: GraphRetryPolicy) -> dict[str, BatchItemResult]:
    """GET each relative URL, or POST each BatchPost, (item id → read, at most 20) in one $batch. Items
    answered 429/503/504 are re-sent up to policy.max_retries times; an item's last answer is
    returned, whatever it is. Raises what `send` raises when the envelope itself fails, and a
    MalformedResponse error when the answer does not account for every item."""
    if len(urls) > MAX_BATCH_REQUESTS:
        raise ValueError(f"a Graph batch holds at most {MAX_BATCH_REQUESTS} requests, got {len(urls)}")
    results: dict[str, BatchItemResult] = {}
    pending = dict(urls)
    for attempt in range(policy.max_retries + 1):
        envelope = await send({"requests": [_request(item_id, read) for item_id, read in pending.items()]})
        answered = _item_results(envelope, pending.keys())
        results.update(answered)
        pending = {item_id: url for item_id, url in pending.items() if answered[item_id].status in RETRYABLE_STATUSES}
        if not pending or attempt == policy.max_retries:
            break
        delay = _retry_delay([answered[item_id] for item_id in pending], policy, attempt)
        if delay is None:
            break
        await asyncio.sleep(delay)
    return results


def _request(item_id: str, read: BatchRead) -> dict[str, Any]:
    if isinstance(read, BatchPost):
        return {"id": item_id, "method": "POST", "url": read.url, "body": read.body,
                "headers": {"Content-Type": "application/json"}}
    return {"id": item_id, "method": "GET", "url": read}


def _retry_delay(throttled: list[BatchItemResult], policy: GraphRetryPolicy, attempt: int) -> float | None:
    """The longest Retry-After among the items, or the backoff if none named one; None when Graph asks
    for a wait the middleware would not make either."""
    named = [item.retry_after for item in throttled if item.retry_after is not None]
    if not named:
        return policy.backoff(attempt)
    longest = max(named)
    return None if longest >= MAX_RETRY_AFTER_SECONDS else longest


def _item_results(envelope: dict[str, Any], item_ids: Any) -> dict[str, BatchItemResult]:
    responses = envelope.get("responses")
    if not isinstance(responses, list):
        raise graph_error(None, "MalformedResponse", "a $batch answer without a 'responses' list")
    results: dict[str, BatchItemResult] = {}
    for response in responses:
        try:
            headers = {str(name).lower(): str(value) for name, value in (response.get("headers") or {}).items()}
            results[str(response["id"])] = BatchItemResult(int(response["status"]), headers, response.get("body"))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise graph_error(None, "MalformedResponse", "a $batch response item without an id and status") from None
    missing = [item_id for item_id in item_ids if item_id not in results]
    if missing:
        raise graph_error(None, "MalformedResponse", f"the $batch answer lacks {len(missing)} of its items")
    return results
