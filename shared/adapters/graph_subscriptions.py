"""Graph change-notification subscriptions over msgraph-sdk: create, renew (PATCH), reauthorize, delete.

A subscription that Graph no longer knows (404: expired and removed, or deleted) is reported as None /
False rather than raised, because the caller's answer to it is to create a new one. Every other SDK or
transport error leaves as a core error (graph_error), as in the Directory adapter."""
from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Iterator

from kiota_abstractions.api_error import APIError
from msgraph import GraphServiceClient
from msgraph.generated.models.subscription import Subscription

from shared.core.errors import graph_error
from shared.core.models import GraphSubscription, SubscriptionRequest

from .graph import _graph_errors


class _Gone(Exception):
    """Graph answered 404 for the subscription."""


@contextmanager
def _gone_on_404() -> Iterator[None]:
    try:
        yield
    except APIError as exc:
        if exc.response_status_code == 404:
            raise _Gone() from exc
        raise


class GraphSubscriptions:
    """The SubscriptionApi port over Graph (permission: User.Read.All for `users`)."""

    def __init__(self, client: GraphServiceClient, *, calls: Counter[str] | None = None) -> None:
        self._client = client
        self.calls: Counter[str] = calls if calls is not None else Counter()

    async def create(self, request: SubscriptionRequest, expires: datetime) -> GraphSubscription:
        body = Subscription(
            resource=request.resource,
            change_type=request.change_type,
            notification_url=request.notification_url,
            lifecycle_notification_url=request.lifecycle_notification_url,
            client_state=request.client_state,
            expiration_date_time=expires,
            latest_supported_tls_version="v1_2",
        )
        self.calls["subscription_create"] += 1
        with _graph_errors():
            created = await self._client.subscriptions.post(body)
        return _subscription(created)

    async def renew(self, subscription_id: str, expires: datetime) -> GraphSubscription | None:
        """PATCH expirationDateTime (this also reauthorizes); None when Graph no longer has it."""
        self.calls["subscription_renew"] += 1
        try:
            with _graph_errors(), _gone_on_404():
                renewed = await self._client.subscriptions.by_subscription_id(subscription_id).patch(
                    Subscription(expiration_date_time=expires))
        except _Gone:
            return None
        return _subscription(renewed)

    async def reauthorize(self, subscription_id: str) -> bool:
        """POST /subscriptions/{id}/reauthorize; False when Graph no longer has it."""
        self.calls["subscription_reauthorize"] += 1
        try:
            with _graph_errors(), _gone_on_404():
                await self._client.subscriptions.by_subscription_id(subscription_id).reauthorize.post()
        except _Gone:
            return False
        return True

    async def delete(self, subscription_id: str) -> None:
        """DELETE; a subscription that is already gone counts as deleted."""
        self.calls["subscription_delete"] += 1
        try:
            with _graph_errors(), _gone_on_404():
                await self._client.subscriptions.by_subscription_id(subscription_id).delete()
        except _Gone:
            pass


def _subscription(value: Subscription | None) -> GraphSubscription:
    if value is None or not value.id or value.expiration_date_time is None:
        raise graph_error(None, "MalformedResponse", "a subscription without an id or expirationDateTime")
    expires = value.expiration_date_time
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=timezone.utc)
    return GraphSubscription(str(value.id), value.resource or "", expires)
