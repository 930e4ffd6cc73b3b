"""The Graph emulator's subscriptions over plain HTTP, against a loopback endpoint that records what
Graph would send it: the validation handshake, the create rules, renew/delete/reauthorize, and the
change and lifecycle notifications a tenant change causes."""
from __future__ import annotations

import asyncio
import socket
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio
from aiohttp import web

from emulators.graph import Tenant, run_graph_emulator
from emulators.graph.server import GraphEmulator


class Endpoint:
    """A webhook on the test's loop. `mode`: "ok", "wrong-token" or "error" (500 to everything)."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.posts: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        if self.mode == "error":
            return web.Response(status=500)
        if "validationToken" in request.query:
            token = request.query["validationToken"]
            return web.Response(text=token + ("x" if self.mode == "wrong-token" else ""), content_type="text/plain")
        self.posts.append(await request.json())
        self.arrived.set()
        return web.Response(status=202)

    async def next_post(self) -> dict[str, Any]:
        await asyncio.wait_for(self.arrived.wait(), 10)
        self.arrived.clear()
        return self.posts[-1]


@pytest_asyncio.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    recorder = Endpoint()
    app = web.Application()
    app.router.add_post("/{tail:.*}", recorder.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    recorder.url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook?code=k"
    yield recorder
    await runner.cleanup()


@pytest.fixture
def tenant() -> Tenant:
    return Tenant(seed=11)


@pytest.fixture
def graph(tenant: Tenant) -> Iterator[GraphEmulator]:
    with run_graph_emulator(tenant) as emulator:
        yield emulator


@pytest_asyncio.fixture
async def http(graph: GraphEmulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=graph.base_url, headers={"Authorization": f"Bearer {graph.token}"}) as client:
        yield client


def in_minutes(minutes: float, *, z: bool = True) -> str:
    moment = (datetime.now(timezone.utc) + timedelta(minutes=minutes)).isoformat()
    return moment.replace("+00:00", "Z") if z else moment


def body(endpoint: Endpoint, **overrides: Any) -> dict[str, Any]:
    return {"changeType": "updated,deleted", "notificationUrl": endpoint.url, "lifecycleNotificationUrl": endpoint.url,
            "resource": "users", "expirationDateTime": in_minutes(60), "clientState": "s3cret", **overrides}


async def test_create_validates_the_endpoint_and_accepts_both_utc_spellings(http, graph, endpoint):
    for z in (True, False):
        response = await http.post("/subscriptions", json=body(endpoint, expirationDateTime=in_minutes(41_000, z=z)))
        assert response.status_code == 201, response.text
        created = response.json()
        assert created["resource"] == "users" and created["clientState"] == "s3cret"
        assert created["id"] in graph.subscriptions.active


@pytest.mark.parametrize("mode", ["wrong-token", "error"])
async def test_create_fails_400_when_validation_fails(http, graph, endpoint, mode):
    endpoint.mode = mode
    response = await http.post("/subscriptions", json=body(endpoint))
    assert response.status_code == 400 and response.json()["error"]["code"] == "ValidationError"
    assert graph.subscriptions.active == {}


@pytest.mark.parametrize("overrides, message", [
    ({"changeType": "created,updated"}, "changeType"),
    ({"expirationDateTime": 41_761}, "41760 minutes"),  # minutes from now, resolved when the test runs
    ({"expirationDateTime": -1}, "future"),
    ({"clientState": "x" * 129}, "128"),
    ({"resource": "applications"}, "resource"),
    ({"notificationUrl": "http://example.com/hook"}, "https"),
])
async def test_create_rejects_what_graph_rejects(http, graph, endpoint, overrides, message):
    if isinstance(overrides.get("expirationDateTime"), int):
        overrides = {**overrides, "expirationDateTime": in_minutes(overrides["expirationDateTime"])}
    response = await http.post("/subscriptions", json=body(endpoint, **overrides))
    assert response.status_code == 400 and message in response.json()["error"]["message"]
    assert graph.subscriptions.active == {} and endpoint.posts == []


async def test_quota_answers_403(http, graph, endpoint):
    graph.subscriptions.quota = 1
    assert (await http.post("/subscriptions", json=body(endpoint))).status_code == 201
    assert (await http.post("/subscriptions", json=body(endpoint))).status_code == 403


async def test_renew_delete_and_reauthorize(http, graph, endpoint):
    subscription_id = (await http.post("/subscriptions", json=body(endpoint))).json()["id"]
    later = in_minutes(40_000)
    renewed = await http.patch(f"/subscriptions/{subscription_id}", json={"expirationDateTime": later})
    assert renewed.status_code == 200 and renewed.json()["expirationDateTime"][:16] == later[:16]
    assert (await http.patch(f"/subscriptions/{subscription_id}",
                             json={"lifecycleNotificationUrl": endpoint.url + "&other"})).status_code == 400
    assert (await http.post(f"/subscriptions/{subscription_id}/reauthorize")).status_code == 204
    assert (await http.delete(f"/subscriptions/{subscription_id}")).status_code == 204
    for response in (await http.patch(f"/subscriptions/{subscription_id}", json={"expirationDateTime": later}),
                     await http.post(f"/subscriptions/{subscription_id}/reauthorize"),
                     await http.delete(f"/subscriptions/{subscription_id}")):
        assert response.status_code == 404


async def test_expired_subscription_is_gone(http, graph, endpoint):
    subscription_id = (await http.post("/subscriptions", json=body(endpoint))).json()["id"]
    graph.subscriptions.expire(subscription_id)
    response = await http.patch(f"/subscriptions/{subscription_id}", json={"expirationDateTime": in_minutes(60)})
    assert response.status_code == 404


async def test_user_changes_notify_matching_subscriptions_only(http, graph, tenant, endpoint):
    before = tenant.add_user(userPrincipalName="before@contoso.com", displayName="Before")
    other = tenant.add_user(userPrincipalName="other@contoso.com", displayName="Other")
    created = (await http.post("/subscriptions", json=body(endpoint, changeType="updated"))).json()
    await http.post("/subscriptions", json=body(endpoint, resource=f"users/{other}", changeType="deleted"))
    tenant.update_user(before, surname="Changed")
    [item] = (await endpoint.next_post())["value"]
    assert item == {
        "id": item["id"], "subscriptionId": created["id"], "clientState": "s3cret", "changeType": "updated",
        "subscriptionExpirationDateTime": item["subscriptionExpirationDateTime"], "tenantId": graph.subscriptions.tenant_id,
        "resource": f"Users/{before}",
        "resourceData": {"@odata.type": "#Microsoft.Graph.User", "@odata.id": f"Users/{before}", "id": before},
    }
    # the first subscription only wants `updated`, the second only `deleted` of `other`
    tenant.hard_delete_user(other)
    [item] = (await endpoint.next_post())["value"]
    assert item["changeType"] == "deleted" and item["resource"] == f"Users/{other}"
    assert item["subscriptionId"] != created["id"]


async def test_failed_deliveries_are_retried_then_recorded(http, graph, tenant, endpoint):
    graph.subscriptions.retry_delay_seconds = 0.01
    await http.post("/subscriptions", json=body(endpoint))
    endpoint.mode = "error"
    tenant.add_user(userPrincipalName="new@contoso.com", displayName="New")
    for _ in range(500):
        if graph.subscriptions.deliveries:
            break
        await asyncio.sleep(0.01)
    [delivery] = graph.subscriptions.deliveries
    assert delivery.status == 500 and graph.subscriptions.delivery_attempts == 3


async def test_reauthorization_required_holds_notifications_until_reauthorized(http, graph, tenant, endpoint):
    user = tenant.add_user(userPrincipalName="held@contoso.com", displayName="Held")
    subscription_id = (await http.post("/subscriptions", json=body(endpoint))).json()["id"]
    assert await graph.subscriptions.request_reauthorization(subscription_id) == 202
    [event] = endpoint.posts[-1]["value"]
    assert event["lifecycleEvent"] == "reauthorizationRequired" and event["subscriptionId"] == subscription_id
    assert event["clientState"] == "s3cret"
    endpoint.arrived.clear()
    tenant.update_user(user, jobTitle="Held back")
    await asyncio.sleep(0.2)
    assert len(endpoint.posts) == 1  # nothing delivered while authorization is pending
    assert (await http.post(f"/subscriptions/{subscription_id}/reauthorize")).status_code == 204
    [item] = (await endpoint.next_post())["value"]
    assert item["resource"] == f"Users/{user}"
