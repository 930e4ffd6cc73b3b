"""The Graph emulator: an aiohttp server on loopback that speaks enough Microsoft Graph v1.0 for the
provisioning app, served from an in-memory `Tenant`.

    with run_graph_emulator(tenant) as graph:        # background thread, 127.0.0.1, ephemeral port
        client = build_graph_client(graph.base_url, StaticTokenCredential(graph.token))
        graph.faults.add("users.delta", 429, times=1, retry_after=1)
        graph.delta.empty_pages = 2
        ...; graph.calls["users.delta"]; graph.outbox

Routing is a table of (name, method, regex) over the path after /v1.0 with `//` collapsed; add a row
and a handler to extend it. Every request is counted by route name in `calls`, needs
`Authorization: Bearer <token>`, then meets the fault plan and the handler. A `$batch` is counted as
"batch" and each of its items under its own route (see batch.py)."""
from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import re
import socket
import threading
import time
import uuid
from collections import Counter, deque
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any, Awaitable, Callable, Iterator, Mapping, Sequence
from urllib.parse import quote, urlencode

from aiohttp import web

from . import delta, group_delta
from .applications import parse_app_roles
from .batch import BatchFormatError, BatchSender
from .faults import FaultPlan, FaultRule
from .mail import SentMail, parse_send_mail
from .subscriptions import EmulatedSubscriptions, SubscriptionError
from .tenant import AppRoleUpdateRefused, Tenant

API_VERSION = "/v1.0"
DEFAULT_TOKEN = "dev-graph-token"
REQUEST_LOG_SIZE = 10_000
MAX_TOP = 999
MAX_CHECK_MEMBER_GROUPS = 20
_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_RESOURCE_FILTER = re.compile(rf"^\s*resourceId\s+eq\s+'?({_GUID})'?\s*$")

# Graph user properties the emulator accepts in $select; extension_* attributes are accepted too.
USER_PROPERTIES = frozenset(
    """id accountEnabled ageGroup businessPhones city companyName country createdDateTime creationType
    deletedDateTime department displayName employeeHireDate employeeId employeeOrgData employeeType
    externalUserState faxNumber givenName identities imAddresses jobTitle mail mailNickname manager
    mobilePhone officeLocation onPremisesExtensionAttributes onPremisesImmutableId
    onPremisesSamAccountName onPremisesSyncEnabled onPremisesUserPrincipalName otherMails postalCode
    preferredLanguage proxyAddresses securityIdentifier showInAddressList state streetAddress surname
    usageLocation userPrincipalName userType""".split()
)


class GraphHTTPError(Exception):
    """Raised by handlers; becomes a Graph error envelope."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, dict(headers or {})


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    route: str
    method: str
    path_qs: str
    retry_attempt: int
    at: float  # time.monotonic() on arrival


Handler = Callable[[web.Request, "re.Match[str]"], Awaitable[web.Response]]


class GraphEmulator:
    """Serve `tenant` over HTTP. Configure with `token`, `page_size` (delta and list default);
    inspect `calls`, `requests`, `outbox`; steer with `faults` and `delta`."""

    def __init__(self, tenant: Tenant | None = None, *, token: str = DEFAULT_TOKEN, page_size: int = 100,
                 seed: int = 0) -> None:
        self.tenant = tenant or Tenant(seed=seed)
        self.token = token
        self.page_size = page_size
        self.delta = delta.DeltaKnobs(page_size=page_size)
        self.faults = FaultPlan(seed)
        self.calls: Counter[str] = Counter()
        self.requests: deque[RecordedRequest] = deque(maxlen=REQUEST_LOG_SIZE)  # newest last
        self.outbox: list[SentMail] = []
        self.base_url = ""
        self.subscriptions = EmulatedSubscriptions(self.tenant, tenant_id=str(uuid.UUID(int=seed + 1)))
        subs = self.subscriptions
        self._batch = BatchSender(API_VERSION)
        routes: list[tuple[str, str, str, Handler]] = [
            ("batch", "POST", r"/\$batch", self._batch_request),
            ("users.delta", "GET", r"/users/(?:delta|delta\(\)|microsoft\.graph\.delta\(\))", self._users_delta),
            ("users.appRoleAssignments", "GET", r"/users/(?P<id>[^/]+)/appRoleAssignments", self._user_assignments),
            ("users.sendMail", "POST", r"/users/(?P<id>[^/]+)/(?:microsoft\.graph\.)?sendMail", self._send_mail),
            ("users.checkMemberGroups", "POST", r"/users/(?P<id>[^/]+)/(?:microsoft\.graph\.)?checkMemberGroups",
             self._check_member_groups),
            ("users.get", "GET", r"/users/(?P<id>[^/]+)", self._user),
            ("servicePrincipals.appRoleAssignedTo", "GET", _SP + r"/appRoleAssignedTo", self._assigned_to),
            ("servicePrincipals.get", "GET", _SP, self._service_principal),
            ("applications.get", "GET", _APP, self._application),
            ("applications.update", "PATCH", _APP, self._update_application),
            ("groups.delta", "GET", r"/groups/(?:delta|delta\(\)|microsoft\.graph\.delta\(\))", self._groups_delta),
            ("groups.transitiveMembers", "GET",
             r"/groups/(?P<id>[^/]+)/transitiveMembers(?:/(?:microsoft\.)?graph\.(?P<cast>user|group))?",
             self._group_transitive_members),
            ("groups.members", "GET", r"/groups/(?P<id>[^/]+)/members(?:/(?:microsoft\.)?graph\.(?P<cast>user|group))?",
             self._group_members),
            ("subscriptions.create", "POST", r"/subscriptions", lambda request, _: subs.create(request)),
            ("subscriptions.list", "GET", r"/subscriptions", lambda *_: subs.list()),
            ("subscriptions.reauthorize", "POST", r"/subscriptions/(?P<id>[^/]+)/(?:microsoft\.graph\.)?reauthorize",
             lambda _, match: subs.reauthorize(match["id"])),
            ("subscriptions.update", "PATCH", r"/subscriptions/(?P<id>[^/]+)", lambda request, match: subs.update(request, match["id"])),
            ("subscriptions.delete", "DELETE", r"/subscriptions/(?P<id>[^/]+)", lambda _, match: subs.delete(match["id"])),
            ("subscriptions.get", "GET", r"/subscriptions/(?P<id>[^/]+)", lambda _, match: subs.get(match["id"])),
        ]
        self._routes = [(name, method, re.compile(f"^{pattern}$"), handler) for name, method, pattern, handler in routes]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ----- lifecycle ----------------------------------------------------------------------------
    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self.subscriptions.attach(app)
        self._batch.attach(app)
        return app

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve in a background thread; returns base_url (".../v1.0", no trailing slash)."""
        if self._thread is not None:
            raise RuntimeError("the emulator is already running")
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=1.0)

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(runner.setup())
                loop.run_until_complete(web.SockSite(runner, sock).start())
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, name="graph-emulator", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread = None
            raise failure[0]
        self._loop = loop
        bound_host, bound_port = sock.getsockname()[:2]
        netloc = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.base_url = f"http://{netloc}:{bound_port}{API_VERSION}"
        return self.base_url

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._thread = self._loop = None

    # ----- dispatch -----------------------------------------------------------------------------
    async def _dispatch(self, request: web.Request) -> web.Response:
        path = re.sub("/{2,}", "/", request.path).rstrip("/")
        route, handler, match = "unmatched", None, None
        if path.startswith(API_VERSION + "/"):
            for name, method, pattern, candidate in self._routes:
                found = pattern.match(path[len(API_VERSION):])
                if found:
                    route = name
                    if method == request.method:
                        handler, match = candidate, found
                        break
        self.calls[route] += 1
        self.requests.append(RecordedRequest(route, request.method, request.path_qs,
                                             int(request.headers.get("Retry-Attempt", "0")), time.monotonic()))
        if self.faults.latency:
            await asyncio.sleep(self.faults.latency)
        try:
            self._authenticate(request)
            if route == "unmatched":
                raise GraphHTTPError(400, "BadRequest", f"Resource not found for the segment '{path}'.")
            if handler is None:
                raise GraphHTTPError(405, "Request_BadRequest", f"The method {request.method} is not allowed.")
            rule = self.faults.take(route, path)
            if rule is not None:
                return self._fault_response(request, rule)
            assert match is not None
            return await handler(request, match)
        except (GraphHTTPError, SubscriptionError) as exc:
            return error_response(request, exc.status, exc.code, exc.message, exc.headers)

    def _authenticate(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            raise GraphHTTPError(401, "InvalidAuthenticationToken", "Access token is empty.")
        if not hmac.compare_digest(presented.encode(), self.token.encode()):
            raise GraphHTTPError(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")

    def _fault_response(self, request: web.Request, rule: FaultRule) -> web.Response:
        if rule.empty:
            return web.json_response({"@odata.context": f"{_origin(request)}{API_VERSION}/$metadata", "value": []})
        headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else {}
        if rule.html:
            title = f"{rule.status} {HTTPStatus(rule.status).phrase}"
            page = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
            return web.Response(status=rule.status, text=page, content_type="text/html", headers=headers)
        return error_response(request, rule.status, rule.error_code, rule.error_message, headers)

    async def _batch_request(self, request: web.Request, _: re.Match[str]) -> web.Response:
        try:
            return await self._batch.respond(request)
        except BatchFormatError as exc:
            raise GraphHTTPError(400, "BadRequest", str(exc)) from None

    # ----- users/delta --------------------------------------------------------------------------
    async def _users_delta(self, request: web.Request, _: re.Match[str]) -> web.Response:
        query = request.query
        for unsupported in ("$orderby", "$expand", "$filter"):
            if unsupported in query:
                raise GraphHTTPError(400, "Request_UnsupportedQuery", "Unsupported Query.")
        select = _user_select(query)
        skiptoken, deltatoken = query.get("$skiptoken"), query.get("$deltatoken")
        tenant, knobs = self.tenant, self.delta
        if select and (skiptoken or deltatoken):
            raise GraphHTTPError(400, "Request_BadRequest", "$select cannot be combined with a delta or skip token.")
        with tenant.lock:
            if deltatoken == "latest":
                return self._delta_response(request, [], delta.latest_cursor(tenant, select, knobs.generation), select)
            if skiptoken or deltatoken:
                if knobs.gone_requests > 0:
                    knobs.gone_requests -= 1
                    knobs.served["gone"] += 1
                    location = f"{_origin(request)}{API_VERSION}/users/delta?$deltatoken="
                    raise GraphHTTPError(410, "resyncRequired", "The delta token is no longer valid; resync.",
                                         {"Location": location})
                cursor = self._decode_cursor(skiptoken or deltatoken or "", final=deltatoken is not None)
                if deltatoken:
                    cursor = delta.next_round(cursor, tenant)
            else:  # a first request, or the empty $deltatoken= of a 410 Location: full sync
                cursor = delta.first_cursor(tenant, select, knobs.generation)
            if knobs.empty_pages > 0:
                knobs.empty_pages -= 1
                knobs.served["empty_page"] += 1
                return self._delta_response(request, [], replace(cursor, final=False, nonce=cursor.nonce + 1), select)
            result = delta.page(tenant, cursor, knobs)
            knobs.served["replayed_object"] += result.replayed
        return self._delta_response(request, result.objects, result.next_cursor, select)

    def _decode_cursor(self, token: str, *, final: bool) -> delta.DeltaCursor:
        try:
            cursor = delta.decode(token, self.delta.generation)
        except delta.ExpiredToken:
            self.delta.served["expired_token"] += 1
            raise GraphHTTPError(400, "syncStateNotFound", "The sync state generation is not found. The delta token "
                                 "is expired and data must be synchronized again.") from None
        except delta.InvalidToken:
            raise GraphHTTPError(400, "Request_BadRequest", "The delta or skip token is malformed.") from None
        if cursor.final != final:
            raise GraphHTTPError(400, "Request_BadRequest", "A skip token was sent as a delta token or the reverse.")
        return cursor

    def _delta_response(self, request: web.Request, objects: list[dict[str, Any]], cursor: delta.DeltaCursor,
                        select: Sequence[str]) -> web.Response:
        origin = _origin(request)
        context = f"{origin}{API_VERSION}/$metadata#users" + (f"({','.join(select)})" if select else "")
        body: dict[str, Any] = {"@odata.context": context}
        link = f"{origin}{API_VERSION}/users/delta?"
        if cursor.final:
            body["@odata.deltaLink"] = link + "$deltatoken=" + delta.encode(cursor)
        else:
            body["@odata.nextLink"] = link + "$skiptoken=" + delta.encode(cursor)
        body["value"] = objects
        return web.json_response(body)

    # ----- users --------------------------------------------------------------------------------
    async def _user(self, request: web.Request, match: re.Match[str]) -> web.Response:
        user = self._find_user(match["id"])
        select = _user_select(request.query)
        names = select or delta.DEFAULT_SELECT
        body = {"@odata.context": f"{_origin(request)}{API_VERSION}/$metadata#users"
                                  + (f"({','.join(select)})" if select else "") + "/$entity"}
        body.update({name: user.get(name) for name in names})
        body["id"] = user["id"]
        return web.json_response(body)

    async def _user_assignments(self, request: web.Request, match: re.Match[str]) -> web.Response:
        user = self._find_user(match["id"])
        assignments = self.tenant.user_app_role_assignments(user["id"])
        resource_filter = request.query.get("$filter")
        if resource_filter is not None:
            found = _RESOURCE_FILTER.match(resource_filter)
            if not found:
                raise GraphHTTPError(400, "Request_UnsupportedQuery", "Only $filter=resourceId eq {id} is supported.")
            assignments = [a for a in assignments if a.resource_id == found.group(1).lower()]
        return self._paged(request, [a.to_json() for a in assignments], "appRoleAssignments")

    async def _send_mail(self, request: web.Request, match: re.Match[str]) -> web.Response:
        sender = self.tenant.find_user(match["id"])
        if sender is None:
            raise GraphHTTPError(404, "ErrorInvalidUser", f"The requested user '{match['id']}' is invalid.")
        try:
            mail = parse_send_mail(sender["id"], await request.read())
        except ValueError as exc:
            raise GraphHTTPError(400, "ErrorInvalidRequest", str(exc)) from None
        self.outbox.append(mail)
        return web.Response(status=202)

    async def _check_member_groups(self, request: web.Request, match: re.Match[str]) -> web.Response:
        """Which of up to 20 group ids the user is a member of, transitively. The ids are evaluated as
        one request: one malformed id fails it all; ids of groups that do not exist are not returned."""
        user = self._find_user(match["id"])
        try:
            group_ids = (await request.json()).get("groupIds")
        except (ValueError, AttributeError):
            raise GraphHTTPError(400, "Request_BadRequest", "The request body must be a JSON object.") from None
        if not isinstance(group_ids, list) or not group_ids:
            raise GraphHTTPError(400, "Request_BadRequest", "groupIds must be a non-empty array.")
        if len(group_ids) > MAX_CHECK_MEMBER_GROUPS:
            raise GraphHTTPError(400, "Request_BadRequest",
                                 f"The number of groupIds exceeds the maximum of {MAX_CHECK_MEMBER_GROUPS}.")
        if not all(isinstance(g, str) and re.fullmatch(_GUID, g) for g in group_ids):
            raise GraphHTTPError(400, "Request_BadRequest", "Invalid GUID in groupIds.")
        member_of = self.tenant.transitive_group_ids(user["id"])
        return web.json_response({"@odata.context": f"{_origin(request)}{API_VERSION}/$metadata#Collection(Edm.String)",
                                  "value": [g for g in group_ids if g.lower() in member_of]})

    def _find_user(self, id_or_upn: str) -> dict[str, Any]:
        user = self.tenant.find_user(id_or_upn)
        if user is None:
            raise GraphHTTPError(404, "Request_ResourceNotFound", f"Resource '{id_or_upn}' does not exist or one of "
                                 "its queried reference-property objects are not present.")
        return user

    # ----- service principals and groups --------------------------------------------------------
    async def _service_principal(self, request: web.Request, match: re.Match[str]) -> web.Response:
        return _entity(request, "servicePrincipals", self._find_service_principal(match).to_json())

    async def _application(self, request: web.Request, match: re.Match[str]) -> web.Response:
        return _entity(request, "applications", self._find_application(match).to_json())

    async def _update_application(self, request: web.Request, match: re.Match[str]) -> web.Response:
        app = self._find_application(match)
        try:
            roles = parse_app_roles(await request.json())
        except ValueError as exc:  # includes a body that is not JSON
            raise GraphHTTPError(400, "Request_BadRequest", str(exc) or "Invalid JSON body.") from None
        try:
            self.tenant.replace_app_roles(app.id, roles)
        except AppRoleUpdateRefused as exc:
            raise GraphHTTPError(400, exc.code, str(exc)) from None
        return web.Response(status=204)

    def _find_application(self, match: re.Match[str]) -> Any:
        return _by_id_or_app_id(match, self.tenant.application)

    async def _assigned_to(self, request: web.Request, match: re.Match[str]) -> web.Response:
        sp = self._find_service_principal(match)
        if "$filter" in request.query:
            raise GraphHTTPError(400, "Request_UnsupportedQuery", "Unsupported Query.")
        return self._paged(request, [a.to_json() for a in self.tenant.assigned_to(sp.id)], "appRoleAssignments")

    def _find_service_principal(self, match: re.Match[str]) -> Any:
        return _by_id_or_app_id(match, self.tenant.service_principal)

    async def _group_members(self, request: web.Request, match: re.Match[str]) -> web.Response:
        if not self.tenant.has_group(match["id"]):
            raise GraphHTTPError(404, "Request_ResourceNotFound", f"Resource '{match['id']}' does not exist or one "
                                 "of its queried reference-property objects are not present.")
        members = self.tenant.group_members(match["id"])
        if match["cast"]:
            members = [m for m in members if m["@odata.type"] == f"#microsoft.graph.{match['cast']}"]
        keep = {"@odata.type", "id", *(_split(request.query.get("$select")) or delta.DEFAULT_SELECT)}
        members = [{k: v for k, v in m.items() if k in keep} for m in members]
        return self._paged(request, members, "directoryObjects")

    async def _groups_delta(self, request: web.Request, _: re.Match[str]) -> web.Response:
        try:
            body = group_delta.respond(self.tenant, request.query, self.page_size, f"{_origin(request)}{API_VERSION}")
        except group_delta.GroupDeltaError as exc:
            raise GraphHTTPError(exc.status, exc.code, exc.message) from None
        return web.json_response(body)

    async def _group_transitive_members(self, request: web.Request, match: re.Match[str]) -> web.Response:
        """Members at any depth. An OData cast is an advanced query: it needs ConsistencyLevel: eventual
        and $count=true (then the answer carries @odata.count)."""
        if not self.tenant.has_group(match["id"]):
            raise GraphHTTPError(404, "Request_ResourceNotFound", f"Resource '{match['id']}' does not exist or one "
                                 "of its queried reference-property objects are not present.")
        advanced = request.headers.get("ConsistencyLevel", "").lower() == "eventual" and \
            request.query.get("$count", "").lower() == "true"
        if match["cast"] and not advanced:
            raise GraphHTTPError(400, "Request_UnsupportedQuery", "The OData cast requires the ConsistencyLevel: "
                                 "eventual header and $count=true.")
        members = self.tenant.transitive_members(match["id"])
        if match["cast"]:
            members = [m for m in members if m["@odata.type"] == f"#microsoft.graph.{match['cast']}"]
        keep = {"@odata.type", "id", *(_split(request.query.get("$select")) or delta.DEFAULT_SELECT)}
        members = [{k: v for k, v in m.items() if k in keep} for m in members]
        response = self._paged(request, members, "directoryObjects")
        if advanced:
            body = json.loads(response.body)  # type: ignore[arg-type]
            response = web.json_response({"@odata.count": len(members), **body})
        return response

    # ----- paging -------------------------------------------------------------------------------
    def _paged(self, request: web.Request, items: list[dict[str, Any]], entity_set: str) -> web.Response:
        """One page of a list with $top (1..999, default page_size) and an opaque $skiptoken."""
        query = request.query
        try:
            top = int(query.get("$top", self.page_size))
        except ValueError:
            raise GraphHTTPError(400, "Request_BadRequest", "Invalid page size specified.") from None
        if not 1 <= top <= MAX_TOP:
            raise GraphHTTPError(400, "Request_BadRequest", f"Invalid page size specified: '{top}'. Must be between 1 "
                                 f"and {MAX_TOP} inclusive.")
        offset = _decode_offset(query.get("$skiptoken"))
        body: dict[str, Any] = {"@odata.context": f"{_origin(request)}{API_VERSION}/$metadata#{entity_set}"}
        if offset + top < len(items):
            params = {k: v for k, v in query.items() if k != "$skiptoken"}
            params["$skiptoken"] = base64.urlsafe_b64encode(f"o:{offset + top}".encode()).decode().rstrip("=")
            body["@odata.nextLink"] = f"{_origin(request)}{request.path}?{urlencode(params, safe=_QUERY_SAFE, quote_via=quote)}"
        body["value"] = items[offset:offset + top]
        return web.json_response(body)


_QUERY_SAFE = "$,'()"
_SP = r"/servicePrincipals(?:/(?P<id>[^/()]+)|\(appId='(?P<app_id>[^']+)'\))"
_APP = r"/applications(?:/(?P<id>[^/()]+)|\(appId='(?P<app_id>[^']+)'\))"


def error_response(request: web.Request, status: int, code: str, message: str,
                   headers: Mapping[str, str] | None = None) -> web.Response:
    """A Graph error envelope."""
    inner = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": str(uuid.uuid4()),
        "client-request-id": request.headers.get("client-request-id", str(uuid.uuid4())),
    }
    return web.json_response({"error": {"code": code, "message": message, "innerError": inner}}, status=status,
                             headers=dict(headers or {}))


def _entity(request: web.Request, entity_set: str, entity: dict[str, Any]) -> web.Response:
    """One object, with only the $select-ed properties (and id) when $select is given."""
    select = _split(request.query.get("$select"))
    if select:
        entity = {name: entity.get(name) for name in ("id", *select)}
    return web.json_response({"@odata.context": f"{_origin(request)}{API_VERSION}/$metadata#{entity_set}/$entity",
                              **entity})


def _by_id_or_app_id(match: re.Match[str], find: Callable[..., Any]) -> Any:
    """The object a `/things/{id}` or `/things(appId='...')` path names, or Graph's 404."""
    key = match["id"] or match["app_id"]
    try:
        return find(key, by_app_id=match["id"] is None)
    except KeyError:
        raise GraphHTTPError(404, "Request_ResourceNotFound", f"Resource '{key}' does not exist or one of its "
                             "queried reference-property objects are not present.") from None


def _origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _user_select(query: Mapping[str, str]) -> list[str]:
    select = _split(query.get("$select"))
    unknown = [name for name in select if name not in USER_PROPERTIES and not name.startswith("extension_")]
    if unknown:
        raise GraphHTTPError(400, "Request_BadRequest",
                             f"Could not find a property named '{unknown[0]}' on type 'microsoft.graph.user'.")
    return select


def _decode_offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        kind, _, value = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().partition(":")
        if kind == "o" and int(value) >= 0:
            return int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise GraphHTTPError(400, "Directory_ExpiredPageToken", "The specified page token value has expired or is invalid.")


@contextmanager
def run_graph_emulator(tenant: Tenant | None = None, **options: Any) -> Iterator[GraphEmulator]:
    """Start a GraphEmulator on 127.0.0.1 (ephemeral port) in a background thread for the block."""
    emulator = GraphEmulator(tenant, **options)
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()
