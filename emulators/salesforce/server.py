"""The Salesforce REST API (the User-provisioning subset) over aiohttp, backed by an EmulatedOrg.

Routes live under /services/data/vNN.N/ (any version). Every response carries Sforce-Limit-Info;
errors use Salesforce's JSON list `[{"message","errorCode","fields"}]`, and composite/sobjects answers
200 with per-record `statusCode` errors."""
from __future__ import annotations

import asyncio
import re
import secrets
from typing import Any, Awaitable, Callable

from aiohttp import web

from . import oauth, soap_login
from .knobs import FAULT_KINDS
from .org import EmulatedOrg, RecordError
from .soql import SoqlError

API = r"/services/data/v{version:\d+\.\d+}"
MAX_COLLECTION = 200
MAX_URI_BYTES = 16_384  # Salesforce answers 414 above this
ORG_KEY = web.AppKey("org", EmulatedOrg)
CURSORS_KEY = web.AppKey("cursors", dict)
STOPPING_KEY = web.AppKey("stopping", asyncio.Event)  # set on shutdown, ends hanging requests

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, code: str, message: str, fields: list[str] | None = None) -> web.Response:
    body: dict[str, Any] = {"message": message, "errorCode": code}
    if fields is not None:
        body["fields"] = fields
    return web.json_response([body], status=status)


def _record_failure(exc: RecordError, record_id: str | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {
        "success": False,
        "errors": [{"statusCode": exc.code, "message": exc.message, "fields": exc.fields}],
    }
    if record_id:
        result["id"] = record_id
    return result


def _kind(request: web.Request) -> str:
    route = request.match_info.route.name or "unknown"
    return route if route != "user" else {"GET": "user_read", "PATCH": "user_update", "DELETE": "user_delete"}.get(
        request.method, "user"
    )


@web.middleware
async def _api_edge(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count, delay, authenticate, inject faults, and stamp Sforce-Limit-Info on every API response."""
    org = request.app[ORG_KEY]
    if len(request.raw_path.encode()) > MAX_URI_BYTES:
        return error_response(414, "URI_TOO_LONG", f"The request URI is longer than {MAX_URI_BYTES} bytes")
    if request.match_info.route.name in ("oauth_token", "soap_login"):
        return await handler(request)  # logins are not API calls and carry no session
    unmatched = request.match_info.http_exception
    if unmatched is not None:
        if unmatched.status == 405:
            return error_response(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{request.method}' not allowed")
        return error_response(404, "NOT_FOUND", "The requested resource does not exist")
    used = org.calls.record(_kind(request), request.method in ("POST", "PATCH", "PUT", "DELETE"))
    response = await _served(request, handler, org)
    response.headers["Sforce-Limit-Info"] = f"api-usage={used}/{org.daily_api_limit}"
    return response


async def _served(request: web.Request, handler: Handler, org: EmulatedOrg) -> web.StreamResponse:
    if org.faults.latency:
        await asyncio.sleep(org.faults.latency)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() not in ("bearer", "oauth") or not org.session_is_valid(token.strip()):
        return error_response(401, "INVALID_SESSION_ID", "Session expired or invalid")
    raw = org.faults.draw_raw(_kind(request))
    if raw is not None:
        return web.Response(status=raw.status, body=raw.body, headers={"Content-Type": raw.content_type})
    fault = org.faults.draw(request.method in ("POST", "PATCH", "PUT", "DELETE"))
    if fault == "hang":
        await request.read()  # the request has arrived whole; only its answer is late
        try:
            await asyncio.wait_for(request.app[STOPPING_KEY].wait(), org.faults.hang_seconds)
            return error_response(503, "SERVER_UNAVAILABLE", "Server shutting down")
        except asyncio.TimeoutError:
            pass  # then serve the request: a client that timed out cannot know whether it happened
    elif fault == "html503":
        return web.Response(status=503, text=FAULT_KINDS[fault][2], content_type="text/html")
    elif fault:
        status, code, message = FAULT_KINDS[fault]
        return error_response(status, code, message)
    try:
        response = await handler(request)
    except _Refused as refused:
        return refused.response
    hook = org.faults.after_write
    if hook is not None and request.method in ("POST", "PATCH") and response.status < 300:
        hook()
    return response


class _Refused(Exception):
    """Ends a request early with an error response (e.g. a body that is not JSON)."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError as exc:
        raise _Refused(error_response(400, "JSON_PARSER_ERROR", f"Unexpected character in JSON body: {exc}")) from None


def _records_page(request: web.Request, sobject: str, rows: list[dict], offset: int, cursor: str) -> web.Response:
    org = request.app[ORG_KEY]
    version = request.match_info["version"]
    size = org.query_page_size
    option = request.headers.get("Sforce-Query-Options", "")
    if option.startswith("batchSize="):
        try:
            size = min(size, max(200, min(2000, int(option.split("=", 1)[1]))))
        except ValueError:
            return error_response(400, "INVALID_QUERY_OPTIONS", "batchSize must be a number")
    page = rows[offset : offset + size]
    records = []
    for row in page:
        url = f"/services/data/v{version}/sobjects/{sobject}/{row['Id']}" if row.get("Id") else None
        records.append({"attributes": {"type": sobject, "url": url}, **row})
    body: dict[str, Any] = {"totalSize": len(rows), "done": offset + size >= len(rows), "records": records}
    cursors = request.app[CURSORS_KEY]
    if body["done"]:
        cursors.pop(cursor, None)  # keep only the result sets a client can still page through
    else:
        cursors[cursor] = (sobject, rows)
        body["nextRecordsUrl"] = f"/services/data/v{version}/query/{cursor}-{offset + size}"
    return web.json_response(body)


async def query(request: web.Request) -> web.Response:
    text = request.query.get("q")
    if not text:
        return error_response(400, "MALFORMED_QUERY", "A query string (q) is required")
    try:
        sobject, rows = request.app[ORG_KEY].query(text)
    except SoqlError as exc:
        return error_response(400, exc.code, exc.message)
    return _records_page(request, sobject, rows, 0, "01g" + secrets.token_hex(8))


async def query_more(request: web.Request) -> web.Response:
    cursor, _, offset = request.match_info["locator"].rpartition("-")
    found = request.app[CURSORS_KEY].get(cursor)
    if found is None or not offset.isdigit():
        return error_response(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
    return _records_page(request, found[0], found[1], int(offset), cursor)


async def create_user(request: web.Request) -> web.Response:
    try:
        user_id = request.app[ORG_KEY].create_user(await _json_body(request))
    except RecordError as exc:
        return error_response(400, exc.code, exc.message, exc.fields)
    return web.json_response({"id": user_id, "success": True, "errors": []}, status=201)


async def user(request: web.Request) -> web.Response:
    org = request.app[ORG_KEY]
    user_id = request.match_info["id"]
    if request.method not in ("GET", "HEAD", "PATCH", "DELETE"):
        return error_response(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{request.method}' not allowed. Allowed are GET,HEAD,PATCH")
    if request.method == "DELETE":
        # Users cannot be deleted, only deactivated.
        return error_response(405, "METHOD_NOT_ALLOWED", "HTTP Method 'DELETE' not allowed. Allowed are GET,HEAD,PATCH")
    if request.method == "PATCH":
        try:
            org.update_user(user_id, await _json_body(request))
        except RecordError as exc:
            status = 404 if exc.code == "NOT_FOUND" else 400
            return error_response(status, exc.code, exc.message, exc.fields)
        return web.Response(status=204)
    found = org.get_user(user_id)
    if found is None:
        return error_response(404, "NOT_FOUND", "The requested resource does not exist")
    wanted = request.query.get("fields")
    if wanted:
        names = {name.strip().lower() for name in wanted.split(",")}
        found = {k: v for k, v in found.items() if k.lower() in names}
    version = request.match_info["version"]
    return web.json_response({"attributes": {"type": "User", "url": f"/services/data/v{version}/sobjects/User/{user_id}"}, **found})


async def profile(request: web.Request) -> web.Response:
    found = request.app[ORG_KEY].get_profile(request.match_info["id"])
    if found is None:
        return error_response(404, "NOT_FOUND", "The requested resource does not exist")
    return web.json_response({"attributes": {"type": "Profile"}, **found})


async def collection(request: web.Request) -> web.Response:
    """composite/sobjects: POST creates, PATCH updates, up to 200 User records, results in order."""
    org = request.app[ORG_KEY]
    body = await _json_body(request)
    records = body.get("records") if isinstance(body, dict) else None
    if not isinstance(records, list) or not records or not all(isinstance(r, dict) for r in records):
        return error_response(400, "JSON_PARSER_ERROR", "The request body must be an object with a non-empty 'records' list")
    if len(records) > MAX_COLLECTION:
        return error_response(
            400, "EXCEEDED_ID_LIMIT", f"record limit reached. cannot submit more than {MAX_COLLECTION} records into this call"
        )
    writable = _WRITABLE[request.method]
    for record in records:
        sobject = (record.get("attributes") or {}).get("type")
        if sobject not in writable:
            return error_response(400, "INVALID_TYPE", f"sObject type '{sobject}' is not supported by this emulator "
                                  f"for {request.method} ({', '.join(writable)} only)")
    all_or_none = body.get("allOrNone", False)
    if not isinstance(all_or_none, bool):
        return error_response(400, "JSON_PARSER_ERROR", "allOrNone must be true or false")
    return _run_collection(org, [lambda r=record: writable[r["attributes"]["type"]](org, r) for record in records],
                           all_or_none, keep_ids=request.method == "PATCH")


async def collection_delete(request: web.Request) -> web.Response:
    """DELETE composite/sobjects?ids=a,b&allOrNone=false: up to 200 records, results in order. Of the
    emulated sObjects only PermissionSetAssignment can be deleted (users are deactivated, never deleted)."""
    org = request.app[ORG_KEY]
    ids = [i for i in request.query.get("ids", "").split(",") if i]
    if not ids:
        return error_response(400, "MISSING_ARGUMENT", "The ids parameter is required")
    if len(ids) > MAX_COLLECTION:
        return error_response(
            400, "EXCEEDED_ID_LIMIT", f"record limit reached. cannot submit more than {MAX_COLLECTION} records into this call"
        )
    all_or_none = request.query.get("allOrNone", "false").lower()
    if all_or_none not in ("true", "false"):
        return error_response(400, "INVALID_QUERY_PARAMETER", "allOrNone must be true or false")
    return _run_collection(org, [lambda i=record_id: _delete_one(org, i) for record_id in ids], all_or_none == "true",
                           keep_ids=True)


def _run_collection(org: EmulatedOrg, writes: list[Callable[[], dict[str, Any]]], all_or_none: bool, *,
                    keep_ids: bool) -> web.Response:
    if not all_or_none:
        return web.json_response([write() for write in writes])
    results: list[dict[str, Any]] = []
    try:
        with org.atomic():
            results = [write() for write in writes]
            if not all(r["success"] for r in results):
                raise _RolledBack()
    except _RolledBack:
        rolled_back = RecordError(
            "ALL_OR_NONE_OPERATION_ROLLED_BACK",
            "Record rolled back because not all records were valid and the request was using AllOrNone header",
        )
        # A rolled-back create has no id; a rolled-back update or delete keeps the id it was sent with.
        results = [r if not r["success"] else _record_failure(rolled_back, r["id"] if keep_ids else None) for r in results]
    return web.json_response(results)


class _RolledBack(Exception):
    """Raised inside org.atomic() to undo an allOrNone batch with a failed record."""


def _create_one(org: EmulatedOrg, record: dict[str, Any]) -> dict[str, Any]:
    try:
        return {"id": org.create_user(record), "success": True, "errors": []}
    except RecordError as exc:
        return _record_failure(exc)


def _assign_one(org: EmulatedOrg, record: dict[str, Any]) -> dict[str, Any]:
    try:
        return {"id": org.assign_permission_set(record), "success": True, "errors": []}
    except RecordError as exc:
        return _record_failure(exc)


def _delete_one(org: EmulatedOrg, record_id: str) -> dict[str, Any]:
    if not _ID.fullmatch(record_id):
        return _record_failure(RecordError("MALFORMED_ID", f"malformed id {record_id}"), record_id)
    if not record_id.startswith("0Pa"):
        return _record_failure(RecordError("INVALID_TYPE", "this emulator deletes PermissionSetAssignment records only"),
                               record_id)
    try:
        org.delete_permission_set_assignment(record_id)
    except RecordError as exc:
        return _record_failure(exc, record_id)
    return {"id": record_id, "success": True, "errors": []}


def _update_one(org: EmulatedOrg, record: dict[str, Any]) -> dict[str, Any]:
    fields = {k: v for k, v in record.items() if k.lower() != "id"}
    record_id = next((v for k, v in record.items() if k.lower() == "id"), None)
    if not record_id:
        return _record_failure(RecordError("MISSING_ARGUMENT", "Id not specified in an update call"))
    try:
        org.update_user(str(record_id), fields)
    except RecordError as exc:
        if exc.code == "NOT_FOUND":
            exc = RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
        return _record_failure(exc, str(record_id))
    return {"id": record_id, "success": True, "errors": []}


_WRITABLE: dict[str, dict[str, Callable[[EmulatedOrg, dict[str, Any]], dict[str, Any]]]] = {
    "POST": {"User": _create_one, "PermissionSetAssignment": _assign_one},
    "PATCH": {"User": _update_one},
}
_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")


async def limits(request: web.Request) -> web.Response:
    org = request.app[ORG_KEY]
    used = org.calls.total
    return web.json_response(
        {
            "DailyApiRequests": {"Max": org.daily_api_limit, "Remaining": max(0, org.daily_api_limit - used)},
            "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
        }
    )


async def oauth_token(request: web.Request) -> web.Response:
    return await oauth.token(request, request.app[ORG_KEY])


async def soap_login_call(request: web.Request) -> web.Response:
    return await soap_login.login(request, request.app[ORG_KEY])


def build_app(org: EmulatedOrg) -> web.Application:
    app = web.Application(middlewares=[_api_edge])
    app[ORG_KEY] = org
    app[CURSORS_KEY] = {}
    app[STOPPING_KEY] = asyncio.Event()
    app.router.add_get(API + "/query{_:/?}", query, name="query")
    app.router.add_get(API + "/query/{locator}", query_more, name="query_more")
    app.router.add_post(API + "/sobjects/User{_:/?}", create_user, name="user_create")
    app.router.add_route("*", API + "/sobjects/User/{id}", user, name="user")
    app.router.add_get(API + "/sobjects/Profile/{id}", profile, name="profile_read")
    app.router.add_post(API + "/composite/sobjects", collection, name="composite_create")
    app.router.add_patch(API + "/composite/sobjects", collection, name="composite_update")
    app.router.add_delete(API + "/composite/sobjects", collection_delete, name="composite_delete")
    app.router.add_get(API + "/limits{_:/?}", limits, name="limits")
    app.router.add_post("/services/oauth2/token", oauth_token, name="oauth_token")
    app.router.add_post("/services/Soap/u/{version}", soap_login_call, name="soap_login")
    return app
