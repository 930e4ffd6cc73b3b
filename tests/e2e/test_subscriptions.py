"""Change-notification subscriptions end to end: the real timer and lifecycle functions, msgraph-sdk
against the Graph emulator, the emulator's webhooks reaching the registered HTTP functions through a
loopback HTTP trigger host, and a tenant change reaching Salesforce through notification → webhook →
Service Bus → provision without the detect timer."""
from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator

import azure.functions as func
import pytest_asyncio
from azure.functions.timer import TimerRequest

from cli.demo import run_cycle
from cli.local_stack import QUEUE, LocalStack, app_settings, local_stack
from emulators.functions_host import QueueTriggerHost, registered_functions
from emulators.functions_http import HttpTriggerHost

CURSOR = "subscription:users"


@pytest_asyncio.fixture(scope="module")
async def stack() -> AsyncIterator[LocalStack]:
    import function_app

    with local_stack(users=60, retry_base_seconds=0.2) as running:
        async with HttpTriggerHost(function_app.app) as http:
            urls = {"NOTIFICATION_URL": http.url_for("graph_notifications"),
                    "LIFECYCLE_NOTIFICATION_URL": http.url_for("graph_lifecycle")}
            async with app_settings(running, urls):
                await run_cycle(running, idle_seconds=0.4)  # the first sync, by the detect timer
                yield running


def functions() -> dict[str, Any]:
    import function_app

    return registered_functions(function_app.app)


def state():
    from shared.bootstrap import current_container

    return current_container().state


def stored() -> dict[str, str]:
    return json.loads(state().get_cursor(CURSOR))


def pretend_expiring_in(days: float) -> None:
    """What the state store holds after that much of the lifetime has passed."""
    record = stored()
    record["expires"] = (datetime.now(timezone.utc) + timedelta(days=days)).isoformat()
    state().set_cursor(CURSOR, json.dumps(record))


async def ensure_via_timer() -> None:
    await functions()["manage_subscriptions"](TimerRequest(past_due=False))


async def test_timer_creates_a_users_subscription_once(stack: LocalStack):
    await ensure_via_timer()
    [subscription] = stack.graph.subscriptions.active.values()
    assert subscription.resource == "users" and subscription.change_types == {"updated", "deleted"}
    assert subscription.client_state == stack.env["GRAPH_CLIENT_STATE"]
    assert stored()["id"] == subscription.id
    assert subscription.expiration - datetime.now(timezone.utc) > timedelta(minutes=41_000)
    await ensure_via_timer()  # fresh: nothing to do
    assert list(stack.graph.subscriptions.active) == [subscription.id]
    assert stack.graph.calls["subscriptions.create"] == 1 and stack.graph.calls["subscriptions.update"] == 0


async def test_timer_renews_when_less_than_a_third_of_the_lifetime_is_left(stack: LocalStack):
    await ensure_via_timer()
    pretend_expiring_in(days=10)  # more than a third of ~29 days: still fine
    await ensure_via_timer()
    assert stack.graph.calls["subscriptions.update"] == 0
    pretend_expiring_in(days=9)
    await ensure_via_timer()
    [subscription] = stack.graph.subscriptions.active.values()
    assert stack.graph.calls["subscriptions.update"] == 1
    assert subscription.expiration - datetime.now(timezone.utc) > timedelta(days=28)
    assert datetime.fromisoformat(stored()["expires"]) == subscription.expiration


async def test_timer_recreates_a_subscription_graph_no_longer_has(stack: LocalStack):
    await ensure_via_timer()
    old = stored()["id"]
    stack.graph.subscriptions.expire(old)
    pretend_expiring_in(days=1)
    await ensure_via_timer()
    [subscription] = stack.graph.subscriptions.active.values()
    assert subscription.id != old and stored()["id"] == subscription.id


async def test_reauthorization_required_is_answered_through_the_lifecycle_function(stack: LocalStack):
    await ensure_via_timer()
    subscription_id = stored()["id"]
    reauthorized = stack.graph.calls["subscriptions.reauthorize"]
    assert await stack.graph.subscriptions.request_reauthorization(subscription_id) == 202
    assert stack.graph.calls["subscriptions.reauthorize"] == reauthorized + 1
    assert stack.graph.subscriptions.active[subscription_id].needs_reauthorization is False


async def test_lifecycle_function_ignores_a_forged_client_state(stack: LocalStack):
    await ensure_via_timer()
    calls = sum(stack.graph.calls.values())
    forged = {"value": [{"subscriptionId": stored()["id"], "clientState": "guess", "lifecycleEvent": "reauthorizationRequired"}]}
    request = func.HttpRequest("POST", "https://app.example/api/graph/lifecycle", body=json.dumps(forged).encode())
    response = await functions()["graph_lifecycle"](request)
    assert response.status_code == 202 and sum(stack.graph.calls.values()) == calls
    malformed = func.HttpRequest("POST", "https://app.example/api/graph/lifecycle", body=b"{not json")
    assert (await functions()["graph_lifecycle"](malformed)).status_code == 400


async def _notified(stack: LocalStack, user_id: str, surname: str) -> list[dict[str, Any]]:
    """Change a user in Entra; wait for the emulator's notification POST; the notification messages
    the webhook queued for that user."""
    delivered = len(stack.graph.subscriptions.deliveries)
    stack.tenant.update_user(user_id, surname=surname)
    for _ in range(500):
        if len(stack.graph.subscriptions.deliveries) > delivered:
            break
        await asyncio.sleep(0.02)
    assert [d.status for d in stack.graph.subscriptions.deliveries[delivered:]] == [202]
    bodies = [json.loads(m.body or b"") for m in stack.servicebus.messages_seen(QUEUE)]
    return [b for b in bodies if b["entraId"] == user_id and b["reason"] == "notification"]


async def test_the_webhook_accepts_a_recreated_subscription_after_having_seen_the_old_one(stack: LocalStack):
    # The webhook keeps the held subscription ids between requests; an id it has not seen makes it read again.
    await ensure_via_timer()
    first, second = [u for u in sorted(stack.demo.expected_roles) if stack.tenant.find_user(u)][:2]
    assert len(await _notified(stack, first, "Before-Recreate")) == 1
    stack.graph.subscriptions.expire(stored()["id"])
    pretend_expiring_in(days=1)
    await ensure_via_timer()
    assert len(await _notified(stack, second, "After-Recreate")) == 1


async def test_a_tenant_change_reaches_salesforce_without_the_detect_timer(stack: LocalStack):
    await ensure_via_timer()
    user_id = next(u for u in sorted(stack.demo.expected_roles) if state().get_link(u) and stack.tenant.find_user(u))
    salesforce_id = state().get_link(user_id).salesforce_id
    delta_calls = stack.graph.calls["users.delta"]
    host = QueueTriggerHost(stack.env["ServiceBusConnection"], QUEUE, functions()["provision_user"])
    running = asyncio.create_task(host.run())
    try:
        stack.tenant.update_user(user_id, surname="Notified-Ñúñez")
        for _ in range(1000):
            if stack.org.get_user(salesforce_id)["LastName"] == "Notified-Ñúñez":
                break
            await asyncio.sleep(0.02)
    finally:
        host.stop()
        await running
    assert stack.org.get_user(salesforce_id)["LastName"] == "Notified-Ñúñez"
    assert stack.graph.calls["users.delta"] == delta_calls  # the detect timer did not run
    assert any(user_id in d.user_ids and d.status == 202 for d in stack.graph.subscriptions.deliveries)
