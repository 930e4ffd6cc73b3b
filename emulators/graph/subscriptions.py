"""Change-notification subscriptions for the Graph emulator (facts: shared reference graph.md §3).

    graph.subscriptions.active                      # id → EmulatedSubscription
    graph.subscriptions.expire(subscription_id)     # as Graph does once expirationDateTime passed: gone, 404
    await graph.subscriptions.request_reauthorization(subscription_id)   # lifecycle event; deliveries held
    graph.subscriptions.deliveries                  # every notification POST: (subscription id, user ids, status)

Creating one runs the validation handshake against notificationUrl (and lifecycleNotificationUrl):
`POST url?validationToken=…` must answer 200 text/plain with the decoded token within 10 s, else the
create fails with 400. Afterwards a watcher on the emulator's event loop follows the tenant's change
log and POSTs a change-notification collection to each matching subscription's notificationUrl (3 s
timeout, a few retries). Only user changes are in the tenant's log, so `groups/{id}` subscriptions are
accepted but never notify."""
from __future__ import annotations

import asyncio
import hmac
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
from aiohttp import web

from emulators.graph.tenant import Tenant, UserChangeRecord
from shared.core.loopback import is_loopback_host

log = logging.getLogger(__name__)

MAX_LIFETIME = timedelta(minutes=41_760)  # users, groups and other directory resources
MAX_CLIENT_STATE = 128
VALIDATION_TIMEOUT_SECONDS = 10.0
DELIVERY_TIMEOUT_SECONDS = 3.0
_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_RESOURCE = re.compile(rf"^/?(?:users(?:/(?P<user>{_GUID}))?|groups(?:/{_GUID}(?:/(?:members|owners))?)?)$", re.I)
_CHANGE_TYPES = frozenset({"updated", "deleted"})
_CHANGE_TYPE_OF = {"created": "updated", "updated": "updated", "soft_deleted": "updated", "restored": "updated",
                   "hard_deleted": "deleted"}


class SubscriptionError(Exception):
    """Becomes a Graph error envelope (server.GraphHTTPError) in the route handler."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers: dict[str, str] = {}


@dataclass
class EmulatedSubscription:
    id: str
    resource: str
    change_types: frozenset[str]
    notification_url: str
    lifecycle_notification_url: str | None
    client_state: str | None
    expiration: datetime
    since: int  # tenant change-log position at creation: older changes do not notify
    needs_reauthorization: bool = False  # set by request_reauthorization; deliveries are held meanwhile
    held: list[UserChangeRecord] = field(default_factory=list)  # changes waiting for reauthorization

    def to_json(self) -> dict[str, Any]:
        return {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscriptions/$entity",
            "id": self.id,
            "resource": self.resource,
            "changeType": ",".join(sorted(self.change_types)),
            "notificationUrl": self.notification_url,
            "lifecycleNotificationUrl": self.lifecycle_notification_url,
            "clientState": self.client_state,
            "expirationDateTime": _iso(self.expiration),
            "applicationId": "00000000-0000-0000-0000-0000000000aa",
            "creatorId": "00000000-0000-0000-0000-0000000000bb",
            "latestSupportedTlsVersion": "v1_2",
            "includeResourceData": False,
        }

    def matches(self, change: UserChangeRecord) -> bool:
        found = _RESOURCE.match(self.resource)
        if found is None or not self.resource.lstrip("/").lower().startswith("users"):
            return False
        user = found["user"]
        return (change.seq > self.since and _CHANGE_TYPE_OF[change.kind] in self.change_types
                and (user is None or user.lower() == change.user_id))


@dataclass(frozen=True, slots=True)
class Delivery:
    subscription_id: str
    user_ids: tuple[str, ...]
    status: int | None  # None: no answer within the timeout, or the connection failed


class EmulatedSubscriptions:
    """The subscriptions of one emulated tenant. Knobs: `quota` (Graph: 100 per app and tenant),
    `delivery_attempts`, `retry_delay_seconds`, `poll_seconds` (how often the change log is read),
    `validation_timeout_seconds`."""

    def __init__(self, tenant: Tenant, tenant_id: str) -> None:
        self.tenant = tenant
        self.tenant_id = tenant_id
        self.active: dict[str, EmulatedSubscription] = {}
        self.deliveries: list[Delivery] = []
        self.lifecycle_deliveries: list[Delivery] = []
        self.quota = 100
        self.delivery_attempts = 3
        self.retry_delay_seconds = 0.2
        self.poll_seconds = 0.01
        self.validation_timeout_seconds = VALIDATION_TIMEOUT_SECONDS
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # ----- HTTP handlers (called from server.py's route table) ------------------------------------
    async def create(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        now = datetime.now(timezone.utc)
        resource = _required_str(body, "resource")
        if not _RESOURCE.match(resource):
            raise SubscriptionError(400, "InvalidRequest", f"Invalid resource '{resource}' for a directory subscription.")
        change_types = frozenset(part.strip() for part in _required_str(body, "changeType").split(","))
        if not change_types or not change_types <= _CHANGE_TYPES:
            raise SubscriptionError(400, "InvalidRequest", "changeType for users and groups may only be 'updated' "
                                    "and/or 'deleted'.")
        notification_url = _url(body, "notificationUrl")
        lifecycle_url = _url(body, "lifecycleNotificationUrl") if body.get("lifecycleNotificationUrl") else None
        client_state = body.get("clientState")
        if client_state is not None and (not isinstance(client_state, str) or len(client_state) > MAX_CLIENT_STATE):
            raise SubscriptionError(400, "InvalidRequest", f"clientState must be a string of at most "
                                    f"{MAX_CLIENT_STATE} characters.")
        expiration = _expiration(body, now)
        if len(self.active) >= self.quota:
            raise SubscriptionError(403, "ExtensionError", f"Operation: Create; Exception: [Status Code: Forbidden; "
                                    f"Reason: Subscription limit of {self.quota} per app and tenant reached]")
        for url in filter(None, (notification_url, lifecycle_url)):
            await self._validate_endpoint(url)
        subscription = EmulatedSubscription(str(uuid.uuid4()), resource, change_types, notification_url, lifecycle_url,
                                            client_state, expiration, self.tenant.position)
        self.active[subscription.id] = subscription
        self._ensure_watcher()
        return web.json_response(subscription.to_json(), status=201)

    async def update(self, request: web.Request, subscription_id: str) -> web.Response:
        subscription = self._find(subscription_id)
        body = await _json_body(request)
        if "lifecycleNotificationUrl" in body and body["lifecycleNotificationUrl"] != subscription.lifecycle_notification_url:
            raise SubscriptionError(400, "InvalidRequest", "lifecycleNotificationUrl can only be set when the "
                                    "subscription is created.")
        if "notificationUrl" in body and body["notificationUrl"] != subscription.notification_url:
            url = _url(body, "notificationUrl")
            await self._validate_endpoint(url)
            subscription.notification_url = url
        if "expirationDateTime" in body:
            subscription.expiration = _expiration(body, datetime.now(timezone.utc))
        self._reauthorized(subscription)  # a PATCH renews and reauthorizes
        return web.json_response(subscription.to_json())

    async def delete(self, subscription_id: str) -> web.Response:
        self._find(subscription_id)
        del self.active[subscription_id.lower()]
        return web.Response(status=204)

    async def reauthorize(self, subscription_id: str) -> web.Response:
        self._reauthorized(self._find(subscription_id))
        return web.Response(status=204)

    async def get(self, subscription_id: str) -> web.Response:
        return web.json_response(self._find(subscription_id).to_json())

    async def list(self) -> web.Response:
        return web.json_response({"value": [s.to_json() for s in self.active.values()]})

    # ----- knobs ------------------------------------------------------------------------------------
    def expire(self, subscription_id: str) -> None:
        """Drop a subscription as Graph does once it expired: renewing it then answers 404."""
        self.active.pop(subscription_id.lower())

    async def request_reauthorization(self, subscription_id: str) -> int | None:
        """Send a `reauthorizationRequired` lifecycle event (callable from any thread or loop) and hold
        the subscription's notifications until it is reauthorized or renewed. Returns the endpoint's
        HTTP status (None when it did not answer)."""
        subscription = self.active[subscription_id.lower()]
        if self._loop is None or subscription.lifecycle_notification_url is None:
            raise RuntimeError("the subscription has no lifecycleNotificationUrl (or the emulator is not running)")
        subscription.needs_reauthorization = True
        item = {"subscriptionId": subscription.id, "subscriptionExpirationDateTime": _iso(subscription.expiration),
                "tenantId": self.tenant_id, "clientState": subscription.client_state,
                "lifecycleEvent": "reauthorizationRequired"}
        future = asyncio.run_coroutine_threadsafe(
            self._post(subscription.lifecycle_notification_url, {"value": [item]}), self._loop)
        status = await asyncio.wrap_future(future)
        self.lifecycle_deliveries.append(Delivery(subscription.id, (), status))
        return status

    # ----- lifecycle --------------------------------------------------------------------------------
    def attach(self, app: web.Application) -> None:
        """Bind to the emulator's event loop when its server starts; stop the watcher on cleanup."""
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)

    async def _on_startup(self, _: web.Application) -> None:
        self._loop = asyncio.get_running_loop()

    async def _on_cleanup(self, _: web.Application) -> None:
        for task in [self._watcher, *self._tasks]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in [self._watcher, *self._tasks] if t is not None), return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    # ----- internals --------------------------------------------------------------------------------
    def _find(self, subscription_id: str) -> EmulatedSubscription:
        subscription = self.active.get(subscription_id.lower())
        if subscription is not None and subscription.expiration <= datetime.now(timezone.utc):
            del self.active[subscription.id]
            subscription = None
        if subscription is None:
            raise SubscriptionError(404, "ResourceNotFound", f"The object was not found: subscription "
                                    f"'{subscription_id}'.")
        return subscription

    def _reauthorized(self, subscription: EmulatedSubscription) -> None:
        subscription.needs_reauthorization = False
        held, subscription.held = subscription.held, []
        if held:
            self._spawn(self._deliver(subscription, held))

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def _validate_endpoint(self, url: str) -> None:
        token = f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()}"
        separator = "&" if urlsplit(url).query else "?"
        try:
            async with self._http().post(
                url + separator + urlencode({"validationToken": token}),
                headers={"Content-Type": "text/plain; charset=utf-8"},
                timeout=aiohttp.ClientTimeout(total=self.validation_timeout_seconds),
            ) as response:
                answer, status, content_type = await response.text(), response.status, response.content_type
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise SubscriptionError(400, "ValidationError", f"Subscription validation request failed: "
                                    f"{type(exc).__name__}.") from None
        if status != 200 or content_type != "text/plain" or not hmac.compare_digest(answer.encode(), token.encode()):
            raise SubscriptionError(400, "ValidationError", "Subscription validation request failed. Notification "
                                    "endpoint must respond with 200 OK to validation request.")

    def _ensure_watcher(self) -> None:
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._watch(self.tenant.position))

    async def _watch(self, position: int) -> None:
        """Follow the tenant's change log; one notification POST per subscription per batch of changes."""
        while True:
            await asyncio.sleep(self.poll_seconds)
            newest = self.tenant.position
            if newest == position:
                continue
            changes, position = self.tenant.changes_between(position, newest), newest
            for subscription in list(self.active.values()):
                mine = [c for c in changes if subscription.matches(c)]
                if not mine:
                    continue
                if subscription.needs_reauthorization:
                    subscription.held.extend(mine)
                else:
                    self._spawn(self._deliver(subscription, mine))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, subscription: EmulatedSubscription, changes: list[UserChangeRecord]) -> None:
        user_ids = [c.user_id for c in changes]
        items = [change_notification(subscription, self.tenant_id, change.user_id, _CHANGE_TYPE_OF[change.kind])
                 for change in changes]
        status: int | None = None
        for attempt in range(self.delivery_attempts):
            if attempt:
                await asyncio.sleep(self.retry_delay_seconds * 2 ** (attempt - 1))
            status = await self._post(subscription.notification_url, {"value": items})
            if status is not None and 200 <= status < 300:
                break
        self.deliveries.append(Delivery(subscription.id, tuple(user_ids), status))
        if status is None or status >= 300:
            log.warning("change notification for subscription %s not accepted (HTTP %s)", subscription.id, status)

    async def _post(self, url: str, payload: dict[str, Any]) -> int | None:
        try:
            async with self._http().post(url, json=payload,
                                         timeout=aiohttp.ClientTimeout(total=DELIVERY_TIMEOUT_SECONDS)) as response:
                await response.read()
                return response.status
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return None


def change_notification(subscription: EmulatedSubscription, tenant_id: str, user_id: str,
                        change_type: str = "updated") -> dict[str, Any]:
    """One basic (no resource data) change notification for a user, as Graph posts it in `value`."""
    return {
        "id": str(uuid.uuid4()),
        "subscriptionId": subscription.id,
        "subscriptionExpirationDateTime": _iso(subscription.expiration),
        "clientState": subscription.client_state,
        "changeType": change_type,
        "resource": f"Users/{user_id}",
        "tenantId": tenant_id,
        "resourceData": {"@odata.type": "#Microsoft.Graph.User", "@odata.id": f"Users/{user_id}", "id": user_id},
    }


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise SubscriptionError(400, "BadRequest", "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise SubscriptionError(400, "BadRequest", "The request body must be a JSON object.")
    return body


def _required_str(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise SubscriptionError(400, "InvalidRequest", f"'{name}' is required.")
    return value


def _url(body: dict[str, Any], name: str) -> str:
    """https, or http on loopback (the emulator's stand-in for a public endpoint)."""
    url = _required_str(body, name)
    parts = urlsplit(url)
    if not parts.hostname or not (parts.scheme == "https" or parts.scheme == "http" and is_loopback_host(parts.hostname)):
        raise SubscriptionError(400, "InvalidRequest", f"'{name}' must be an https URL.")
    return url


def _expiration(body: dict[str, Any], now: datetime) -> datetime:
    value = _required_str(body, "expirationDateTime")
    try:
        moment = datetime.fromisoformat(value)  # Python 3.11 reads both `Z` and `+00:00`
    except ValueError:
        raise SubscriptionError(400, "InvalidRequest", f"expirationDateTime '{value}' is not a date and time.") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    if moment <= now:
        raise SubscriptionError(400, "InvalidRequest", "Subscription expiration must be in the future.")
    if moment > now + MAX_LIFETIME:
        raise SubscriptionError(400, "InvalidRequest", f"Subscription expiration can only be "
                                f"{int(MAX_LIFETIME.total_seconds() // 60)} minutes in the future.")
    return moment
