"""The hostile webhook corpus (tests/corpus/webhook/*.json): each body or query posted over loopback
HTTP through the local Functions HTTP host to graph_notifications, graph_lifecycle or
provision_on_demand, as Graph (or an attacker) would. Each case states the answer (status, content
type, body) and what may follow from it: the users enqueued, the log line; nothing else may change
(no Salesforce write, the held subscription untouched, no Graph subscription call)."""
from __future__ import annotations

import json
import logging
import uuid
from typing import Any, AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from azure.functions.timer import TimerRequest
from yarl import URL

from cli.local_stack import QUEUE, LocalStack, app_settings, local_stack
from emulators.functions_host import registered_functions
from emulators.functions_http import HttpTriggerHost
from tests.functions.service_bus_io import QueueSession, queued_bodies

from .corpus import body_bytes, cases, fill

SUBSCRIPTION_CURSOR = "subscription:users"


@pytest_asyncio.fixture(scope="module")
async def stack() -> AsyncIterator[tuple[LocalStack, HttpTriggerHost]]:
    """A stack whose app holds a users subscription (created by the real timer), with the webhooks
    served by the loopback HTTP host."""
    import function_app

    with local_stack(users=40) as running:
        async with HttpTriggerHost(function_app.app) as http:
            urls = {"NOTIFICATION_URL": http.url_for("graph_notifications"),
                    "LIFECYCLE_NOTIFICATION_URL": http.url_for("graph_lifecycle")}
            async with app_settings(running, urls):
                await registered_functions(function_app.app)["manage_subscriptions"](TimerRequest(past_due=False))
                yield running, http


@pytest_asyncio.fixture(scope="module")
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest_asyncio.fixture(scope="module")
async def queue(stack) -> AsyncIterator[QueueSession]:
    async with QueueSession(stack[0]) as session:
        yield session


def placeholders(stack: LocalStack) -> dict[str, str]:
    from shared.bootstrap import current_container

    [subscription] = stack.graph.subscriptions.active.values()
    users = sorted(stack.demo.expected_roles)
    return {"user": users[0], "otherUser": users[1], "clientState": stack.env["GRAPH_CLIENT_STATE"],
            "subscriptionId": subscription.id, "unknownId": str(uuid.uuid4()),
            "heldCursor": current_container().state.get_cursor(SUBSCRIPTION_CURSOR) or ""}


@pytest.mark.parametrize("case", cases("webhook"))
async def test_webhook_case(case: dict[str, Any], stack, client, queue, caplog) -> None:
    running, http = stack
    from shared.bootstrap import current_container

    names = placeholders(running)
    case = fill(case, names)
    expect = case["expect"]
    url = URL(http.url_for(case["function"], **case.get("route", {}))).update_query(case.get("query", {}))
    seen, writes = len(running.servicebus.messages_seen(QUEUE)), running.org.calls.writes
    subscription_calls = {k: v for k, v in running.graph.calls.items() if k.startswith("subscriptions.")}
    headers = case.get("headers", {"Content-Type": "application/json"})

    with caplog.at_level(logging.INFO):
        async with client.post(url, data=body_bytes(case.get("body")), headers=headers) as response:
            status, content_type, body = response.status, response.content_type, await response.read()
            response_headers = response.headers

    assert status == expect["status"], body[:300]
    if "content_type" in expect:
        assert content_type == expect["content_type"]
    for name, value in expect.get("headers", {}).items():
        assert response_headers.get(name) == value
    if "body" in expect:
        assert body == expect["body"].encode()
    for fragment in expect.get("body_contains", []):
        assert fragment in body.decode()
    if "json" in expect:
        answer = json.loads(body)
        assert {key: answer.get(key) for key in expect["json"]} == expect["json"]
    if "log" in expect:
        assert expect["log"] in caplog.text
    for secret in expect.get("log_excludes", []):
        assert secret not in caplog.text
    assert "Traceback" not in caplog.text and not [r for r in caplog.records if r.exc_info], "a handler crashed"

    bodies = queued_bodies(running, seen)
    received = await queue.drain(len(bodies))
    assert sorted(b["entraId"] for b in received) == sorted(expect.get("enqueued", []))
    assert running.servicebus.message_count(QUEUE) == 0
    assert running.org.calls.writes == writes, "a webhook wrote to Salesforce"
    assert {k: v for k, v in running.graph.calls.items() if k.startswith("subscriptions.")} == subscription_calls
    assert current_container().state.get_cursor(SUBSCRIPTION_CURSOR) == names["heldCursor"]
