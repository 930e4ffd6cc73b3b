"""graph_notifications as the host calls it: a real func.HttpRequest in, a func.HttpResponse out, and
the messages it puts on the real queue."""
from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import azure.functions as func
import pytest

from cli.local_stack import QUEUE
from shared.adapters.service_bus import ServiceBusReconcileQueue
from shared.services.change_notifications import ENQUEUE_DEADLINE_SECONDS, ChangeNotificationReceiver, EnqueueFailed
from .service_bus_io import queued_bodies

URL = "https://provisioning.example/api/graph/notifications"


def handshake(token: str) -> func.HttpRequest:
    # The host URL-decodes query parameters before the worker sees them; params carry the decoded token.
    return func.HttpRequest("POST", URL, params={"validationToken": token}, body=b"",
                            headers={"Content-Type": "text/plain; charset=utf-8"})


def notification(user_id: str, client_state: str) -> dict[str, Any]:
    """One change notification as Graph sends it for a user (a fresh subscription id each time, so no
    two tests post the same item and meet Service Bus duplicate detection)."""
    return {
        "id": str(uuid.uuid4()),
        "subscriptionId": str(uuid.uuid4()),
        "subscriptionExpirationDateTime": "2030-01-20T11:00:00Z",
        "clientState": client_state,
        "changeType": "updated",
        "resource": f"Users/{user_id}",
        "tenantId": str(uuid.uuid4()),
        "resourceData": {"@odata.type": "#Microsoft.Graph.User", "@odata.id": f"Users/{user_id}", "id": user_id},
    }


def post(body: bytes) -> func.HttpRequest:
    return func.HttpRequest("POST", URL, body=body, headers={"Content-Type": "application/json"})


def post_items(*items: dict[str, Any]) -> func.HttpRequest:
    return post(json.dumps({"value": list(items)}).encode())


@pytest.fixture
def webhook(functions):
    return functions["graph_notifications"]


@pytest.fixture
def client_state(stack) -> str:
    return stack.env["GRAPH_CLIENT_STATE"]


@pytest.fixture
def users(stack) -> list[str]:
    return sorted(stack.demo.expected_roles)


@pytest.fixture
async def enqueued(stack, queue):
    """What a test's requests enqueued: the bodies the queue accepted, received and completed with the
    SDK so the next test starts from an empty queue."""
    before = len(stack.servicebus.messages_seen(QUEUE))

    async def collect() -> list[dict[str, Any]]:
        bodies = queued_bodies(stack, before)
        received = await queue.drain(len(bodies))
        assert sorted(b["entraId"] for b in received) == sorted(b["entraId"] for b in bodies)
        assert stack.servicebus.message_count(QUEUE) == 0
        return bodies

    return collect


@pytest.mark.parametrize("token", [
    "Validation: Testing client application reachability for subscription Request-Id: 3d0a4a3e",
    "<script>alert('x')</script>&amp;",  # markup comes back verbatim, as inert text
    "t" * 1024,
])
async def test_validation_handshake_echoes_the_decoded_token_as_plain_text(webhook, stack, token):
    response = await webhook(handshake(token))
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert response.get_body() == token.encode()
    assert stack.servicebus.message_count(QUEUE) == 0


@pytest.mark.parametrize("token", ["", "t" * 1025])
async def test_an_empty_or_oversized_validation_token_is_refused(webhook, token):
    response = await webhook(handshake(token))
    assert response.status_code == 400
    assert response.mimetype == "text/plain"
    assert response.get_body() != token.encode()


async def test_a_notification_for_a_user_enqueues_one_message_for_that_user(webhook, users, client_state, enqueued):
    response = await webhook(post_items(notification(users[0], client_state)))
    assert response.status_code == 202
    [body] = await enqueued()
    assert body["entraId"] == users[0]
    assert body["reason"] == "notification"
    assert body["schemaVersion"] == 1


async def test_a_forged_client_state_is_accepted_and_enqueues_nothing(webhook, users, client_state, enqueued):
    response = await webhook(post_items(notification(users[0], client_state + "x")))
    assert response.status_code == 202  # a forger learns nothing
    assert await enqueued() == []


async def test_a_body_that_is_not_json_is_a_bad_request(webhook, enqueued):
    response = await webhook(post(b"{not json"))
    assert response.status_code == 400
    assert await enqueued() == []


async def test_a_body_without_a_value_array_is_a_bad_request(webhook, users, client_state, enqueued):
    response = await webhook(post(json.dumps(notification(users[0], client_state)).encode()))
    assert response.status_code == 400
    assert await enqueued() == []


async def test_only_the_items_with_the_right_client_state_are_enqueued(webhook, users, client_state, enqueued):
    good, forged, missing = users[1], users[2], users[3]
    no_state = notification(missing, client_state)
    del no_state["clientState"]
    response = await webhook(post_items(
        notification(forged, "guess"), notification(good, client_state), no_state))
    assert response.status_code == 202
    assert [b["entraId"] for b in await enqueued()] == [good]


async def test_several_notifications_for_one_user_in_one_post_enqueue_one_message(webhook, users, client_state, enqueued):
    user, other = users[4], users[5]
    response = await webhook(post_items(
        notification(user, client_state), notification(user, client_state),
        notification(user.upper(), client_state), notification(other, client_state)))
    assert response.status_code == 202
    assert sorted(b["entraId"] for b in await enqueued()) == sorted([user, other])


async def _until_queued(stack, user_id: str, since: int) -> None:
    """Wait (bounded) until the queue holds a message for the user; a bound, not a timing."""
    for _ in range(500):
        if any(b["entraId"] == user_id for b in queued_bodies(stack, since)):
            return
        await asyncio.sleep(0.02)


async def test_a_queue_slower_than_graph_waits_answers_503_and_the_late_send_still_lands(webhook, stack, users, client_state, enqueued):
    # Graph gives up after 3 s and delivers again after a 5xx; the send already under way is not cut off.
    user = users[6]
    since = len(stack.servicebus.messages_seen(QUEUE))
    stack.servicebus.slow_sends(ENQUEUE_DEADLINE_SECONDS + 1)
    try:
        response = await webhook(post_items(notification(user, client_state)))
    finally:
        stack.servicebus.slow_sends(0)
    assert response.status_code == 503
    await _until_queued(stack, user, since)
    assert [b["entraId"] for b in await enqueued()] == [user]


async def test_a_send_that_fails_is_reported_not_swallowed_and_nothing_is_queued(stack, users, client_state, enqueued):
    # The receiver as the webhook uses it, on a queue adapter without SDK retries: the failure surfaces
    # as EnqueueFailed (the webhook answers 503 so Graph delivers again), and the re-delivery gets through.
    since = len(stack.servicebus.messages_seen(QUEUE))
    body = json.dumps({"value": [notification(users[7], client_state)]}).encode()
    async with ServiceBusReconcileQueue(QUEUE, connection_string=stack.env["ServiceBusConnection"], retry_total=0) as queue:
        receiver = ChangeNotificationReceiver(queue, client_state)
        stack.servicebus.refuse_sends(1)
        with pytest.raises(EnqueueFailed, match="ServiceBusServerBusyError"):
            await receiver.accept(body)
        assert queued_bodies(stack, since) == []
        result = await receiver.accept(body)
    assert result.enqueued == 1
    assert [b["entraId"] for b in await enqueued()] == [users[7]]
