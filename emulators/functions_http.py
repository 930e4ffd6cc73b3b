"""What the Azure Functions host does for HTTP triggers, for local tests and benchmarks (the host itself
cannot run here): a loopback aiohttp server that routes `/api/<route>` to the app's registered HTTP
functions, checks the function key of `authLevel: function` routes (`?code=` or `x-functions-key`),
turns the request into a real `azure.functions.HttpRequest`, calls the function and sends back its
`HttpResponse`.

It runs on the caller's event loop, so functions share the loop their cached clients were built on:

    async with HttpTriggerHost(function_app.app) as host:
        url = host.url_for("graph_notifications")   # http://127.0.0.1:<port>/api/graph/notifications?code=…
"""
from __future__ import annotations

import asyncio
import hmac
import inspect
import logging
import re
import secrets
import socket
from typing import Any, Callable
from urllib.parse import quote

import azure.functions as func
from aiohttp import web

from .functions_host import binding_settings, registered_functions

log = logging.getLogger(__name__)

ROUTE_PREFIX = "/api"  # host.json extensions.http.routePrefix default
MAX_REQUEST_BODY_BYTES = 104_857_600  # the host's HTTP request length limit (100 MB), not aiohttp's 1 MiB
_PARAMETER = re.compile(r"\{(\w+)(?::[^}]*)?\}")  # {name} or {name:constraint} in a route template


def _route_pattern(route: str) -> re.Pattern[str]:
    """A route template such as `provision/{entra_id}` as a regex with one named group per parameter."""
    parts, last = [], 0
    for found in _PARAMETER.finditer(route):
        parts += [re.escape(route[last:found.start()]), f"(?P<{found.group(1)}>[^/]+)"]
        last = found.end()
    return re.compile("".join([*parts, re.escape(route[last:])]) + "$", re.IGNORECASE)


class HttpTriggerHost:
    def __init__(self, app: func.FunctionApp) -> None:
        functions = registered_functions(app)
        self.function_key = secrets.token_urlsafe(24)
        self.base_url = ""
        self._routes: dict[str, tuple[str, frozenset[str], bool, Callable[..., Any]]] = {}  # route template → …
        for name, bindings in binding_settings(app).items():
            trigger = next((b for b in bindings if b.get("type") == "httpTrigger"), None)
            if trigger is None:
                continue
            route = (trigger.get("route") or name).strip("/")
            methods = frozenset(m.upper() for m in trigger.get("methods") or ("GET", "POST"))
            needs_key = str(trigger.get("authLevel", "function")).lower() != "anonymous"
            self._routes[route] = (name, methods, needs_key, functions[name])
        self._runner: web.AppRunner | None = None

    def url_for(self, function_name: str, **route_params: str) -> str:
        """The function's public URL, with its key when it needs one (as the portal's "Get function URL");
        `route_params` fill a templated route such as `provision/{entra_id}` (URL-encoded)."""
        for route, (name, _, needs_key, _) in self._routes.items():
            if name == function_name:
                path = _PARAMETER.sub(lambda found: quote(route_params[found.group(1)], safe=""), route)
                return f"{self.base_url}{ROUTE_PREFIX}/{path}" + (f"?code={self.function_key}" if needs_key else "")
        raise KeyError(f"no HTTP function {function_name}")

    async def __aenter__(self) -> "HttpTriggerHost":
        app = web.Application(client_max_size=MAX_REQUEST_BODY_BYTES)
        app.router.add_route("*", ROUTE_PREFIX + "/{route:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(self._runner, sock).start()
        host, port = sock.getsockname()[:2]
        self.base_url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _match(self, path: str) -> tuple[tuple[str, frozenset[str], bool, Callable[..., Any]], dict[str, str]] | None:
        for route, found in self._routes.items():
            matched = _route_pattern(route).match(path)
            if matched:
                return found, matched.groupdict()
        return None

    async def _handle(self, request: web.Request) -> web.Response:
        matched = self._match(request.match_info["route"].strip("/"))
        if matched is None:
            return web.Response(status=404)
        (name, methods, needs_key, function), route_params = matched
        if request.method not in methods:
            return web.Response(status=405)
        if needs_key:
            presented = request.query.get("code") or request.headers.get("x-functions-key") or ""
            if not hmac.compare_digest(presented.encode(), self.function_key.encode()):
                return web.Response(status=401)
        binding = func.HttpRequest(
            request.method, str(request.url), headers=dict(request.headers), params=dict(request.query),
            route_params=route_params, body=await request.read(),
        )
        try:  # sync functions run on worker threads, as the Python worker runs them
            if inspect.iscoroutinefunction(function):
                response = await function(binding)
            else:
                response = await asyncio.to_thread(function, binding)
        except Exception:  # the host answers 500 and logs the invocation as failed
            log.exception("HTTP function %s failed", name)
            return web.Response(status=500)
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-type"}
        return web.Response(status=response.status_code, body=response.get_body(), headers=headers,
                            content_type=response.mimetype or "text/plain", charset=response.charset)
