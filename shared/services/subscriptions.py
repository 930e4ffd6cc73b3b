"""Keep Graph change-notification subscriptions alive, so changes reach the queue within seconds.

A timer calls `ensure()`: for each resource, create the subscription when none is stored, renew it
when less than a third of its lifetime is left, and create a new one when Graph says the stored one is
gone (404). Subscription ids and expirations live in the state store's cursors
(`subscription:<resource>`). Graph's lifecycle events arrive through `handle_lifecycle()`:
`reauthorizationRequired` is answered with POST /reauthorize, or with a renewal (a PATCH both
renews and reauthorizes) when the renewal is due anyway; `subscriptionRemoved` with a new subscription. The detect timer keeps running regardless and picks up
whatever notifications miss.

Only `users` is subscribed: the webhook enqueues the users a notification names, and assignment or
group-membership changes are not notification resources the webhook could act on (appRoleAssignment
has no subscriptions at all; a `groups/{id}` notification names the group, not the member). The detect
timer covers those."""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, Sequence
from urllib.parse import urlsplit

from ..core.errors import ConfigurationError
from ..core.loopback import is_loopback_url
from ..core.messages import is_object_id
from ..core.models import GraphSubscription, SubscriptionRequest
from ..core.ports import StateStore, SubscriptionApi
from .change_notifications import MalformedNotification, client_state_matches, notification_items

log = logging.getLogger(__name__)

# Graph allows at most 41,760 minutes for directory resources; an hour less leaves room for clock skew.
DEFAULT_LIFETIME = timedelta(minutes=41_760 - 60)
CURSOR_PREFIX = "subscription:"
MAX_CLIENT_STATE = 128
LIFECYCLE_EVENTS = frozenset({"reauthorizationRequired", "subscriptionRemoved", "missed"})

Action = Literal["created", "renewed", "recreated", "reauthorized", "unchanged", "ignored"]


@dataclass(frozen=True, slots=True)
class SubscriptionOutcome:
    resource: str
    action: Action
    subscription_id: str | None
    expires: datetime | None


class MalformedLifecycleNotification(MalformedNotification):
    """The body is not a Graph lifecycle-notification collection."""


@dataclass(frozen=True, slots=True)
class SubscriptionConfig:
    notification_url: str
    lifecycle_notification_url: str
    client_state: str
    resources: Sequence[str] = ("users",)
    change_type: str = "updated,deleted"
    lifetime: timedelta = DEFAULT_LIFETIME

    def __post_init__(self) -> None:
        if not self.client_state or len(self.client_state) > MAX_CLIENT_STATE:
            raise ConfigurationError(f"the clientState (GRAPH_CLIENT_STATE) must be 1..{MAX_CLIENT_STATE} characters")
        for name, url in (("NOTIFICATION_URL", self.notification_url),
                          ("LIFECYCLE_NOTIFICATION_URL", self.lifecycle_notification_url)):
            scheme = urlsplit(url).scheme
            if not (scheme == "https" or scheme == "http" and is_loopback_url(url)):
                raise ConfigurationError(f"{name} must be an https URL (plain http only for a loopback test host)")

    def request(self, resource: str) -> SubscriptionRequest:
        return SubscriptionRequest(resource, self.change_type, self.notification_url, self.lifecycle_notification_url,
                                   self.client_state)

    @property
    def endpoint_fingerprint(self) -> str:
        """Changes when the URLs change (e.g. a rotated function key), which needs a new subscription:
        lifecycleNotificationUrl cannot be changed on an existing one. A hash, as the URLs carry the key."""
        urls = f"{self.notification_url}\n{self.lifecycle_notification_url}".encode()
        return hashlib.sha256(urls).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class _Stored:
    id: str
    expires: datetime
    endpoint: str

    def dump(self) -> str:
        return json.dumps({"id": self.id, "expires": self.expires.isoformat(), "endpoint": self.endpoint})

    @classmethod
    def load(cls, raw: str | None) -> "_Stored | None":
        if not raw:
            return None
        try:
            data = json.loads(raw)
            return cls(str(data["id"]), datetime.fromisoformat(data["expires"]), str(data.get("endpoint", "")))
        except (ValueError, KeyError, TypeError):
            log.warning("stored subscription cursor is unreadable; a new subscription will be created")
            return None


class SubscriptionManager:
    def __init__(self, api: SubscriptionApi, state: StateStore, config: SubscriptionConfig) -> None:
        self._api = api
        self._state = state
        self._config = config
        self._client_state = config.client_state.encode()

    async def ensure(self) -> list[SubscriptionOutcome]:
        """Create, renew or recreate each resource's subscription as needed."""
        return [await self._ensure(resource) for resource in self._config.resources]

    async def handle_lifecycle(self, body: bytes) -> list[SubscriptionOutcome]:
        """Act on Graph lifecycle events; items whose clientState does not match are dropped (logged
        without content), as are events for subscriptions this app does not hold."""
        outcomes = []
        for item in _lifecycle_items(body):
            if not client_state_matches(item.get("clientState"), self._client_state):
                log.warning("dropped a lifecycle notification: clientState mismatch")
                outcomes.append(SubscriptionOutcome("", "ignored", None, None))
                continue
            # Both values end up in log lines: anything but a GUID and a known event name is replaced,
            # so a post cannot forge log lines or flood them.
            subscription_id = _text(item.get("subscriptionId")).lower()
            event = _text(item.get("lifecycleEvent"))
            outcomes.append(await self._lifecycle_event(
                subscription_id if is_object_id(subscription_id) else "(not a subscription id)",
                event if event in LIFECYCLE_EVENTS else "(unknown event)"))
        return outcomes

    def held_ids(self) -> frozenset[str]:
        """The ids of the subscriptions this app holds (lower-case), to tell its notifications from others'."""
        held = (_Stored.load(self._state.get_cursor(CURSOR_PREFIX + r)) for r in self._config.resources)
        return frozenset(stored.id.lower() for stored in held if stored is not None)

    # ----- internals --------------------------------------------------------------------------------
    async def _ensure(self, resource: str) -> SubscriptionOutcome:
        stored = _Stored.load(self._state.get_cursor(CURSOR_PREFIX + resource))
        now = _now()
        if stored is None:
            return await self._create(resource, "created")
        if stored.endpoint != self._config.endpoint_fingerprint:
            log.info("subscription %s for %s points at an old endpoint: replacing it", stored.id, resource)
            await self._api.delete(stored.id)
            return await self._create(resource, "recreated")
        if stored.expires - now >= self._config.lifetime / 3:
            log.info("subscription %s for %s: nothing to do (expires %s)", stored.id, resource, stored.expires.isoformat())
            return SubscriptionOutcome(resource, "unchanged", stored.id, stored.expires)
        return await self._renew(resource, stored.id)

    async def _renew(self, resource: str, subscription_id: str) -> SubscriptionOutcome:
        renewed = await self._api.renew(subscription_id, _now() + self._config.lifetime)
        if renewed is None:
            log.warning("subscription %s for %s is gone (404): creating a new one", subscription_id, resource)
            return await self._create(resource, "recreated")
        self._store(resource, renewed)
        log.info("subscription %s for %s renewed until %s", renewed.id, resource, renewed.expires.isoformat())
        return SubscriptionOutcome(resource, "renewed", renewed.id, renewed.expires)

    async def _create(self, resource: str, action: Action) -> SubscriptionOutcome:
        created = await self._api.create(self._config.request(resource), _now() + self._config.lifetime)
        self._store(resource, created)
        log.info("subscription %s for %s %s, expires %s", created.id, resource, action, created.expires.isoformat())
        return SubscriptionOutcome(resource, action, created.id, created.expires)

    def _store(self, resource: str, subscription: GraphSubscription) -> None:
        stored = _Stored(subscription.id, subscription.expires, self._config.endpoint_fingerprint)
        self._state.set_cursor(CURSOR_PREFIX + resource, stored.dump())

    def _held(self, subscription_id: str) -> tuple[str, _Stored] | None:
        for resource in self._config.resources:
            stored = _Stored.load(self._state.get_cursor(CURSOR_PREFIX + resource))
            if stored is not None and stored.id.lower() == subscription_id:
                return resource, stored
        return None

    async def _lifecycle_event(self, subscription_id: str, event: str) -> SubscriptionOutcome:
        held = self._held(subscription_id)
        if held is None:
            log.warning("lifecycle event %s for subscription %s, which this app does not hold: ignored",
                        event, subscription_id)
            return SubscriptionOutcome("", "ignored", subscription_id, None)
        resource, stored = held
        if event == "reauthorizationRequired":
            if stored.expires - _now() < self._config.lifetime / 3:
                return await self._renew(resource, stored.id)  # a renewal reauthorizes too
            if not await self._api.reauthorize(stored.id):
                log.warning("subscription %s for %s is gone (404): creating a new one", stored.id, resource)
                return await self._create(resource, "recreated")
            log.info("subscription %s for %s reauthorized", stored.id, resource)
            return SubscriptionOutcome(resource, "reauthorized", stored.id, stored.expires)
        if event == "subscriptionRemoved":
            return await self._create(resource, "recreated")
        # `missed` (Outlook only) or a future event: the detect timer catches up on what was missed.
        log.info("lifecycle event %s for subscription %s: nothing to do", event, subscription_id)
        return SubscriptionOutcome(resource, "ignored", subscription_id, None)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _lifecycle_items(body: bytes) -> list[dict[str, Any]]:
    items = notification_items(body)
    if not all(isinstance(item, dict) for item in items):
        raise MalformedLifecycleNotification("body has no 'value' array of objects")
    return items
