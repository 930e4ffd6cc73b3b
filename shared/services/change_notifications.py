"""Accept Graph change notifications for users and enqueue the users they name.

Graph drops webhooks that answer slowly, so this only validates and enqueues; the provisioning
function does the work. clientState is compared in constant time; when the app manages its
subscriptions, an item must also come from one it holds (not a stale or another tenant's one). Items
that fail a check are dropped and logged (without their content), and the caller still answers 202 so
a forger learns nothing.

Graph waits 3 s for an answer. An enqueue that has not finished within ENQUEUE_DEADLINE_SECONDS, or
that failed, raises EnqueueFailed, and the webhook answers 503 so Graph delivers the notifications
again: nothing is lost, and a late send that did arrive makes the re-delivery's messages duplicates
that Service Bus drops (same notification, same minute → same message id)."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from ..core.errors import ProvisioningError
from ..core.messages import ReconcileMessage, is_object_id
from ..core.untrusted_json import parse_untrusted_json
from ..core.ports import ReconcileQueue

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1_000_000  # Graph batches at most a few hundred small notifications
ENQUEUE_DEADLINE_SECONDS = 2.0  # of Graph's 3 s, leaving room for the host and the network
HELD_IDS_MAX_AGE_SECONDS = 60.0


class MalformedNotification(ValueError):
    """The body is not a Graph change-notification collection."""


class EnqueueFailed(Exception):
    """The users could not be enqueued in time: the sender should deliver the notifications again."""


@dataclass(frozen=True, slots=True)
class NotificationResult:
    accepted: int
    rejected: int
    enqueued: int


def notification_items(body: bytes) -> list[Any]:
    """The `value` array of a Graph notification collection (change or lifecycle notifications)."""
    if len(body) > MAX_BODY_BYTES:
        raise MalformedNotification(f"body of {len(body)} bytes exceeds {MAX_BODY_BYTES}")
    try:
        payload = parse_untrusted_json(body)
    except ValueError:
        raise MalformedNotification("body is not JSON") from None
    items = payload.get("value") if isinstance(payload, dict) else None
    if not isinstance(items, list):
        raise MalformedNotification("body has no 'value' array")
    return items


_LATE_SENDS: set[asyncio.Future[None]] = set()  # referenced until done, so they are not collected


def _late_send_done(sending: asyncio.Future[None]) -> None:
    _LATE_SENDS.discard(sending)
    if not sending.cancelled() and sending.exception() is not None:
        log.warning("a change-notification enqueue past its deadline failed too: %s", type(sending.exception()).__name__)


def client_state_matches(value: object, secret: bytes) -> bool:
    """Constant-time comparison of a posted clientState with the secret. Anything but a string is a
    mismatch; so is a string JSON allowed but UTF-8 cannot encode (a lone surrogate such as \\ud800)."""
    candidate = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else b""
    return hmac.compare_digest(candidate, secret)


def _user_id(item: dict[str, Any]) -> str | None:
    data = item.get("resourceData")
    if isinstance(data, dict) and is_object_id(data.get("id")):
        return data["id"].lower()
    resource = item.get("resource")
    if isinstance(resource, str):
        tail = resource.rstrip("/").rsplit("/", 1)[-1]
        if resource.lower().startswith("users/") and is_object_id(tail):
            return tail.lower()
    return None


class ChangeNotificationReceiver:
    def __init__(self, queue: ReconcileQueue, client_state: str,
                 held_subscriptions: Callable[[], frozenset[str]] | None = None,
                 enqueue_deadline_seconds: float = ENQUEUE_DEADLINE_SECONDS) -> None:
        """`held_subscriptions` returns the (lower-case) ids of the subscriptions the app holds; None
        when subscriptions are made outside the app, and then any subscription id is accepted."""
        if not client_state:
            raise ValueError("a clientState secret is required to accept change notifications")
        self._queue = queue
        self._client_state = client_state.encode()
        self._held_subscriptions = held_subscriptions
        self._held: frozenset[str] | None = None  # as last read, at _held_read_at (monotonic)
        self._held_read_at = 0.0
        self._deadline = enqueue_deadline_seconds

    async def accept(self, body: bytes) -> NotificationResult:
        items = notification_items(body)
        bucket = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M")
        user_ids: dict[str, str] = {}
        rejected = 0
        held = await self._held_ids(items)
        for item in items:
            if not isinstance(item, dict) or not self._client_state_matches(item.get("clientState")):
                rejected += 1
                continue
            subscription_id = item.get("subscriptionId")
            if held is not None and not (isinstance(subscription_id, str) and subscription_id.lower() in held):
                rejected += 1
                continue
            user_id = _user_id(item)
            if user_id is None:
                rejected += 1
                continue
            # Same notification re-delivered by Graph within the minute → same message id → dropped.
            cause = hashlib.sha256(json.dumps(item, sort_keys=True).encode()).hexdigest()[:16] + bucket
            user_ids.setdefault(user_id, cause)
        if rejected:
            log.warning("dropped %d of %d change notifications (clientState mismatch, a subscription this app "
                        "does not hold, or no user id)", rejected, len(items))
        messages = [ReconcileMessage.new(u, "notification", cause) for u, cause in user_ids.items()]
        await self._enqueue(messages)
        return NotificationResult(accepted=len(items) - rejected, rejected=rejected, enqueued=len(messages))

    async def _held_ids(self, items: list[Any]) -> frozenset[str] | None:
        """The subscriptions the app holds. Read from the state store (a network call in Azure, so on a
        worker thread) when an item names one not seen yet (a new subscription, or a stranger's) or the
        last read is HELD_IDS_MAX_AGE_SECONDS old (a replaced one), not on every request of a burst."""
        if self._held_subscriptions is None:
            return None
        named = {i["subscriptionId"].lower() for i in items
                 if isinstance(i, dict) and isinstance(i.get("subscriptionId"), str)}
        now = time.monotonic()
        if self._held is None or not named <= self._held or now - self._held_read_at > HELD_IDS_MAX_AGE_SECONDS:
            self._held, self._held_read_at = await asyncio.to_thread(self._held_subscriptions), now
        return self._held

    async def _enqueue(self, messages: list[ReconcileMessage]) -> None:
        if not messages:
            return
        # Shielded: a send past the deadline goes on (it may yet arrive) while the caller answers 503.
        sending = asyncio.ensure_future(self._queue.send(messages))
        try:
            await asyncio.wait_for(asyncio.shield(sending), self._deadline)
        except asyncio.TimeoutError:
            raise EnqueueFailed(f"enqueueing {len(messages)} users took longer than {self._deadline:g} s") from None
        except ProvisioningError as exc:
            raise EnqueueFailed(f"enqueueing {len(messages)} users failed: {exc.code}") from exc
        finally:
            if not sending.done():  # past the deadline, or the request was cancelled: let it finish
                _LATE_SENDS.add(sending)
                sending.add_done_callback(_late_send_done)

    def _client_state_matches(self, value: object) -> bool:
        return client_state_matches(value, self._client_state)
