"""JSON batching for the Graph emulator: `POST /v1.0/$batch` with up to 20 requests.

Each item is sent back into the emulator over loopback HTTP with the envelope's Authorization, so it
meets the same routing, authentication, call counting (by its own route name) and fault plan as a
request of its own; a 429 item carries Retry-After in its headers. Items without dependsOn run
concurrently and their responses come back in completion order, as Graph's may; an item whose
dependency did not succeed gets 424 without being sent. A malformed batch (more than 20 requests,
duplicate ids, an absolute url, a body without Content-Type, an unknown or circular dependsOn) is
rejected whole with 400, as Graph does."""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

MAX_REQUESTS = 20
METHODS = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE"})
_FORWARDED = ("Authorization", "client-request-id")  # envelope headers every item inherits
_RETURNED = ("Content-Type", "Retry-After", "Location")  # item response headers put in the batch response


class BatchFormatError(ValueError):
    """The batch as a whole is malformed (400)."""


@dataclass(frozen=True, slots=True)
class BatchItem:
    id: str
    method: str
    url: str  # relative to the API version, e.g. "/users/{id}?$select=id"
    headers: dict[str, str]
    body: bytes | None
    depends_on: tuple[str, ...]


ItemResponse = dict[str, Any]


def parse_batch(raw: bytes) -> list[BatchItem]:
    try:
        envelope = json.loads(raw or b"")
    except ValueError:
        raise BatchFormatError("Invalid batch payload format: the body is not JSON.") from None
    requests = envelope.get("requests") if isinstance(envelope, dict) else None
    if not isinstance(requests, list) or not requests:
        raise BatchFormatError("Invalid batch payload format: 'requests' must be a non-empty array.")
    if len(requests) > MAX_REQUESTS:
        raise BatchFormatError(f"Number of batch request steps exceeds the maximum value of {MAX_REQUESTS}.")
    items = [_item(entry) for entry in requests]
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        raise BatchFormatError("Batch request steps must have unique ids.")
    for item in items:
        unknown = [d for d in item.depends_on if d not in ids]
        if unknown:
            raise BatchFormatError(f"Request '{item.id}' depends on '{unknown[0]}', which is not in the batch.")
    return items


def _item(entry: Any) -> BatchItem:
    if not isinstance(entry, dict):
        raise BatchFormatError("Invalid batch payload format: each request must be an object.")
    item_id, method, url = entry.get("id"), entry.get("method"), entry.get("url")
    if not isinstance(item_id, str) or not item_id:
        raise BatchFormatError("Invalid batch payload format: each request needs a string id.")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise BatchFormatError(f"Request '{item_id}' has an unsupported method {method!r}.")
    if not isinstance(url, str) or not url:
        raise BatchFormatError(f"Request '{item_id}' needs a url.")
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        raise BatchFormatError(f"Request '{item_id}': the url must be relative to the API version, not absolute.")
    headers = entry.get("headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise BatchFormatError(f"Request '{item_id}': headers must be an object of strings.")
    depends_on = entry.get("dependsOn") or []
    if not isinstance(depends_on, list) or not all(isinstance(d, str) for d in depends_on):
        raise BatchFormatError(f"Request '{item_id}': dependsOn must be an array of ids.")
    body = None
    if "body" in entry:
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
        if content_type is None:
            raise BatchFormatError(f"Request '{item_id}' has a body but no Content-Type header.")
        value = entry["body"]
        body = value.encode() if isinstance(value, str) else json.dumps(value).encode()
    return BatchItem(item_id, method.upper(), "/" + url.lstrip("/"), dict(headers), body, tuple(depends_on))


async def run_batch(items: list[BatchItem], send: Callable[[BatchItem], Awaitable[ItemResponse]]) -> list[ItemResponse]:
    """Send every item once its dependencies succeeded; 424 for those whose dependencies did not."""
    by_id = {item.id: item for item in items}
    sorter = TopologicalSorter({item.id: item.depends_on for item in items})
    try:
        sorter.prepare()
    except CycleError:
        raise BatchFormatError("Batch request steps have a circular dependsOn.") from None
    responses: list[ItemResponse] = []
    succeeded: dict[str, bool] = {}
    running: set[asyncio.Task[ItemResponse]] = set()

    def finish(response: ItemResponse) -> None:
        responses.append(response)
        succeeded[response["id"]] = 200 <= response["status"] < 300
        sorter.done(response["id"])

    while sorter.is_active():
        for item_id in sorter.get_ready():
            item = by_id[item_id]
            if all(succeeded[d] for d in item.depends_on):
                running.add(asyncio.create_task(send(item)))
            else:
                finish(_failed_dependency(item.id))
        if running:
            done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                finish(task.result())
    return responses


def _failed_dependency(item_id: str) -> ItemResponse:
    return {"id": item_id, "status": 424, "headers": {"Content-Type": "application/json"},
            "body": {"error": {"code": "FailedDependency", "message": "A request this one depends on failed."}}}


class BatchSender:
    """Sends batch items into the emulator over loopback HTTP (one connection pool per server)."""

    def __init__(self, api_version: str) -> None:
        self._api_version = api_version
        self._session: aiohttp.ClientSession | None = None

    def attach(self, app: web.Application) -> None:
        app.on_cleanup.append(self._on_cleanup)

    async def _on_cleanup(self, _: web.Application) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def respond(self, envelope: web.Request) -> web.Response:
        items = parse_batch(await envelope.read())
        origin = f"{envelope.scheme}://{envelope.host}{self._api_version}"
        inherited = {name: envelope.headers[name] for name in _FORWARDED if name in envelope.headers}
        responses = await run_batch(items, lambda item: self._send(origin, inherited, item))
        return web.json_response({"responses": responses})

    async def _send(self, origin: str, inherited: dict[str, str], item: BatchItem) -> ItemResponse:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.request(item.method, origin + item.url, headers={**item.headers, **inherited},
                                         data=item.body) as answer:
            raw = await answer.read()
            headers = {name: answer.headers[name] for name in _RETURNED if name in answer.headers}
            response: ItemResponse = {"id": item.id, "status": answer.status, "headers": headers}
            if raw:
                response["body"] = json.loads(raw) if answer.content_type == "application/json" else raw.decode()
        return response
