"""The SalesforceOrg port over simple-salesforce (REST, sObject Collections).

SOQL is built only with simple_salesforce.format_soql, so a UPN such as o'brien@contoso.com is data.
Writes go through composite/sobjects, 200 records a call, allOrNone=false, and every record gets a
RecordResult. Every SDK or network error becomes a core error through `salesforce_error`; an expired
session rebuilds the client once through `connect` and retries once."""
from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar
from urllib.parse import quote_plus

import requests
from simple_salesforce import Salesforce, format_soql
from simple_salesforce.exceptions import SalesforceAuthenticationFailed, SalesforceError
from simple_salesforce.format import quote_soql_value

from shared.core.errors import ProvisioningError, SessionExpired, salesforce_error
from shared.core.models import PermissionSetAssignment, SalesforceProfile, SalesforceRole, SalesforceUser
from shared.core.permission_sets import PermissionTarget
from shared.core.profile_roles import ASSIGNABLE_USER_TYPES

from .cached_read import MIN_REFRESH_AGE_SECONDS, CachedRead
from shared.core.ports import RecordResult

log = logging.getLogger(__name__)

MAX_URL_BYTES = 16_384  # Salesforce refuses longer request URIs (414)
COLLECTION_SIZE = 200  # records per composite/sobjects call
# Permission set ids change only when an admin deletes and re-creates a set: re-read them now and then.
PERMISSION_TARGETS_TTL_SECONDS = 900.0
_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)?$")
_SALESFORCE_ID = re.compile(r"^[A-Za-z0-9]{15}([A-Za-z0-9]{3})?$")
_TAG = re.compile(r"<[^>]+>")
# simple-salesforce follows nextRecordsUrl as f"https://{instance}{url}": anything but this path (say
# "@evil.example/...") would turn the instance into a userinfo and send the session token elsewhere.
_NEXT_RECORDS_URL = re.compile(r"^/services/data/v\d+\.\d+/query(All)?/[A-Za-z0-9-]+$")

T = TypeVar("T")


@dataclass
class SalesforceCallCounts:
    """API requests this adapter sent to /services/data (what counts against the org's daily limit)."""

    total: int = 0
    queries: int = 0
    writes: int = 0


class SalesforceRestOrg:
    """Implements shared.core.ports.SalesforceOrg. `connect` builds an authenticated client (see
    salesforce_client); it is called lazily on first use and again once when a session expires.
    Profiles and roles are cached; a refresh asked for within `min_refresh_seconds` of the last read
    is answered from the cache."""

    def __init__(self, connect: Callable[[], Salesforce], *, timeout: float = 30.0,
                 min_refresh_seconds: float = MIN_REFRESH_AGE_SECONDS) -> None:
        self._connect = connect
        self._timeout = timeout
        self._client: Salesforce | None = None
        self._profiles = CachedRead(self._read_profile_ids, min_age_seconds=min_refresh_seconds)
        self._targets: dict[PermissionTarget, str | None] = {}  # None: not in the org
        self._targets_read_at = float("-inf")
        self._roles = CachedRead(self._read_user_roles, min_age_seconds=min_refresh_seconds)
        self._lock = threading.Lock()  # guards the client and the counters across worker threads
        self.calls = SalesforceCallCounts()

    # -- port
    async def find_users(
        self, fields: Sequence[str], *, ids: Iterable[str] = (), usernames: Iterable[str] = (),
        match: Mapping[str, Iterable[str]] | None = None,
    ) -> list[SalesforceUser]:
        select = _select_list(fields)
        _select_list(list(match or {}))  # matching field names are checked like selected ones
        wanted_ids = list(dict.fromkeys(ids))
        bad = [value for value in wanted_ids if not _SALESFORCE_ID.match(str(value))]
        if bad:
            raise salesforce_error(None, "MALFORMED_ID", f"not Salesforce ids: {bad[:5]}")
        wanted_names = list({name.casefold(): name for name in usernames}.values())
        found: dict[str, SalesforceUser] = {}
        columns = [("Id", wanted_ids), ("Username", wanted_names)]
        columns += [(name, list(dict.fromkeys(values))) for name, values in (match or {}).items()]
        for soql in self._in_queries(select, columns):
            for record in await self._run(lambda client, q=soql: self._query_all(client, q)):
                user = SalesforceUser(id=record["Id"], fields={k: v for k, v in record.items() if k != "attributes"})
                found[user.id] = user
        return list(found.values())

    async def profile_ids(self, *, refresh: bool = False) -> Mapping[str, str]:
        return dict(await self._profiles.get(refresh=refresh))

    async def user_roles(self, *, refresh: bool = False) -> list[SalesforceRole]:
        return list(await self._roles.get(refresh=refresh))

    async def _read_profile_ids(self) -> dict[str, str]:
        records = await self._run(lambda client: self._query_all(client, "SELECT Id, Name FROM Profile"))
        return {r["Name"]: r["Id"] for r in records if isinstance(r.get("Name"), str)}

    async def _read_user_roles(self) -> list[SalesforceRole]:
        records = await self._run(lambda client: self._query_all(client, "SELECT Id, Name, DeveloperName FROM UserRole"))
        return [SalesforceRole(r["Id"], r["Name"], r["DeveloperName"]) for r in records
                if all(isinstance(r.get(k), str) for k in ("Id", "Name", "DeveloperName"))]

    async def assignable_profiles(self) -> list[SalesforceProfile]:
        """Profiles whose licence category fits a user created without a Contact (ProfileCatalog port)."""
        soql = format_soql("SELECT Id, Name, UserType FROM Profile WHERE UserType IN {} ORDER BY Name",
                           list(ASSIGNABLE_USER_TYPES))
        records = await self._run(lambda client: self._query_all(client, soql))
        return [SalesforceProfile(r["Id"], r["Name"], r["UserType"]) for r in records
                if all(isinstance(r.get(k), str) for k in ("Id", "Name", "UserType"))]

    async def taken_values(self, values: Mapping[str, Iterable[str]]) -> dict[str, set[str]]:
        columns = [(name, list(dict.fromkeys(wanted))) for name, wanted in values.items()]
        columns = [(name, wanted) for name, wanted in columns if wanted]
        taken: dict[str, set[str]] = {name: set() for name, _ in columns}
        if not columns:
            return taken
        select = _select_list([name for name, _ in columns])
        for soql in self._in_queries(select, columns):
            for record in await self._run(lambda client, q=soql: self._query_all(client, q)):
                for name, wanted in columns:
                    if record.get(name) not in (None, ""):
                        taken[name].add(str(record[name]))
        # The query ORs the fields, so a record may carry other values of a field than those asked about.
        asked = {name: {v.casefold() for v in wanted} for name, wanted in columns}
        return {name: {v for v in found if v.casefold() in asked[name]} for name, found in taken.items()}

    async def create_users(self, records: Sequence[Mapping[str, Any]]) -> list[RecordResult]:
        return await self._write("POST", records)

    async def update_users(self, records: Sequence[Mapping[str, Any]]) -> list[RecordResult]:
        return await self._write("PATCH", records)

    async def permission_target_ids(self, targets: Iterable[PermissionTarget]) -> Mapping[PermissionTarget, str]:
        """Ids of the named permission sets (not those owned by profiles) and permission set groups
        that exist; one query per kind for the names not cached. Found and missing names alike are
        cached for PERMISSION_TARGETS_TTL_SECONDS."""
        if time.monotonic() - self._targets_read_at > PERMISSION_TARGETS_TTL_SECONDS:
            self._targets, self._targets_read_at = {}, time.monotonic()
        wanted = set(targets)
        missing = sorted(wanted - self._targets.keys())
        for kind, name_field, soql in (
            ("PermissionSet", "Name", "SELECT Id, Name FROM PermissionSet WHERE Name IN {} AND IsOwnedByProfile = false"),
            ("PermissionSetGroup", "DeveloperName", "SELECT Id, DeveloperName FROM PermissionSetGroup WHERE DeveloperName IN {}"),
        ):
            names = [t.name for t in missing if t.kind == kind]
            if not names:
                continue
            by_name = {name.casefold(): name for name in names}  # SOQL compares text case-insensitively
            records = await self._run(lambda client, q=format_soql(soql, names): self._query_all(client, q))
            found = {by_name[str(r[name_field]).casefold()]: r["Id"] for r in records
                     if str(r[name_field]).casefold() in by_name}
            for name in names:
                self._targets[PermissionTarget(kind, name)] = found.get(name)  # type: ignore[arg-type]
        return {t: i for t in wanted if (i := self._targets.get(t))}

    async def permission_set_assignments(
        self, assignee_ids: Iterable[str], permission_set_ids: Iterable[str], permission_set_group_ids: Iterable[str],
    ) -> list[PermissionSetAssignment]:
        """The assignments of those users to those permission sets or permission set groups, in as few
        queries as the URL length allows."""
        assignees = list(dict.fromkeys(assignee_ids))
        sets, groups = sorted(set(permission_set_ids)), sorted(set(permission_set_group_ids))
        bad = [value for value in [*assignees, *sets, *groups] if not _SALESFORCE_ID.match(str(value))]
        if bad:
            raise salesforce_error(None, "MALFORMED_ID", f"not Salesforce ids: {bad[:5]}")
        if not assignees or not (sets or groups):
            return []
        found: list[PermissionSetAssignment] = []
        for soql in self._assignment_queries(assignees, sets, groups):
            for r in await self._run(lambda client, q=soql: self._query_all(client, q)):
                found.append(PermissionSetAssignment(r["Id"], r["AssigneeId"], r["PermissionSetId"],
                                                     r.get("PermissionSetGroupId")))
        return found

    async def create_permission_set_assignments(self, records: Sequence[Mapping[str, Any]]) -> list[RecordResult]:
        """composite/sobjects POST of PermissionSetAssignment records (AssigneeId and PermissionSetId or
        PermissionSetGroupId), up to 200 per call, allOrNone=false."""
        return await self._write("POST", records, sobject="PermissionSetAssignment")

    async def delete_permission_set_assignments(self, ids: Sequence[str]) -> list[RecordResult]:
        """composite/sobjects DELETE ?ids=…, up to 200 per call, allOrNone=false."""
        bad = [value for value in ids if not _SALESFORCE_ID.match(str(value))]
        if bad:
            raise salesforce_error(None, "MALFORMED_ID", f"not Salesforce ids: {bad[:5]}")
        return await self._in_collections(
            "DELETE", ids, lambda chunk: {"params": {"ids": ",".join(chunk), "allOrNone": "false"}})

    # -- queries
    def _in_queries(self, select: str, columns: list[tuple[str, list[str]]]) -> Iterator[str]:
        """SOQL texts `SELECT … FROM User WHERE A IN (…) OR B IN (…)` that together cover every
        (column, value) pair, each short enough for one GET.

        simple-salesforce sends base_url + 'query/?q=' + quote_plus(soql), and quote_plus works character
        by character, so a query's URL length is the sum of its parts' encoded lengths."""
        # Before the first connect the host is unknown: assume the longest a host name can be.
        base = len(self._client.base_url) if self._client else len("https://" + "x" * 255 + "/services/data/v99.9/")
        fixed = base + len("query/?q=") + len(quote_plus(f"SELECT {select} FROM User WHERE "))
        chunk: dict[str, list[str]] = {}
        length = fixed
        for column, values in columns:
            for value in values:
                quoted = len(quote_plus(quote_soql_value(value)))
                opening = len(quote_plus(f"{' OR ' if chunk else ''}{column} IN ()"))
                added = quoted + (len(quote_plus(",")) if column in chunk else opening)
                if chunk and length + added > MAX_URL_BYTES:
                    yield _in_query(select, chunk)
                    chunk, length = {}, fixed
                    added = quoted + len(quote_plus(f"{column} IN ()"))
                if length + added > MAX_URL_BYTES:
                    raise salesforce_error(None, "URI_TOO_LONG", f"one {column} value alone exceeds the URL limit")
                chunk.setdefault(column, []).append(value)
                length += added
        if chunk:
            yield _in_query(select, chunk)

    def _assignment_queries(self, assignees: list[str], sets: list[str], groups: list[str]) -> Iterator[str]:
        """Halve the assignee list until each query fits in one GET."""
        targets = " OR ".join(part for part in (format_soql("PermissionSetId IN {}", sets) if sets else "",
                                                 format_soql("PermissionSetGroupId IN {}", groups) if groups else "") if part)
        soql = format_soql("SELECT Id, AssigneeId, PermissionSetId, PermissionSetGroupId FROM PermissionSetAssignment "
                           "WHERE AssigneeId IN {}", assignees) + f" AND ({targets})"
        base = len(self._client.base_url) if self._client else len("https://" + "x" * 255 + "/services/data/v99.9/")
        if base + len("query/?q=") + len(quote_plus(soql)) <= MAX_URL_BYTES:
            yield soql
        elif len(assignees) == 1:
            raise salesforce_error(None, "URI_TOO_LONG", "too many permission sets mapped for one assignment query")
        else:
            half = len(assignees) // 2
            yield from self._assignment_queries(assignees[:half], sets, groups)
            yield from self._assignment_queries(assignees[half:], sets, groups)

    def _query_all(self, client: Salesforce, soql: str) -> list[dict[str, Any]]:
        """All pages, following nextRecordsUrl; every page is one counted API call."""
        page = _query_page(client.query(soql, timeout=self._timeout))
        records = list(page["records"])
        while not page["done"]:
            page = _query_page(client.query_more(page["nextRecordsUrl"], identifier_is_url=True, timeout=self._timeout))
            records.extend(page["records"])
        return records

    # -- writes
    async def _write(self, method: str, records: Sequence[Mapping[str, Any]], *, sobject: str = "User") -> list[RecordResult]:
        return await self._in_collections(method, records, lambda chunk: {"json": {
            "allOrNone": False, "records": [{"attributes": {"type": sobject}, **record} for record in chunk]}})

    async def _in_collections(self, method: str, items: Sequence[Any],
                              request: Callable[[Sequence[Any]], dict[str, Any]]) -> list[RecordResult]:
        """One composite/sobjects call per 200 items (`request` makes its json body or params). If a
        whole call fails, that chunk and every later one get the call's error (nothing more is sent:
        the org is unhappy, retry later)."""
        results: list[RecordResult] = []
        for start in range(0, len(items), COLLECTION_SIZE):
            chunk = items[start : start + COLLECTION_SIZE]
            try:
                response = await self._run(
                    lambda client, r=request(chunk): client.restful("composite/sobjects", method=method,
                                                                    timeout=self._timeout, **r)
                )
            except ProvisioningError as exc:
                log.warning("composite/sobjects %s failed as a whole: %s", method, exc.code)
                results.extend(RecordResult(None, exc) for _ in items[start:])
                return results
            chunk_results = _record_results(response, len(chunk))
            failed = sum(1 for r in chunk_results if r.error)
            log.info("composite/sobjects %s: %d records, %d failed", method, len(chunk), failed)
            results.extend(chunk_results)
        return results

    # -- calling the SDK
    async def _run(self, call: Callable[[Salesforce], T]) -> T:
        """Run a blocking SDK call in a worker thread; on INVALID_SESSION_ID reconnect and retry once."""
        try:
            return await asyncio.to_thread(self._call, call)
        except SessionExpired:
            log.info("Salesforce session expired; re-authenticating once")
            self._client = None
            return await asyncio.to_thread(self._call, call)

    def _call(self, call: Callable[[Salesforce], T]) -> T:
        try:
            with self._lock:
                if self._client is None:
                    self._client = self._connect()
                    if self._count not in self._client.session.hooks["response"]:
                        self._client.session.hooks["response"].append(self._count)
                client = self._client
            return call(client)
        except SalesforceAuthenticationFailed as exc:  # a SalesforceError subclass without .status
            raise salesforce_error(None, "INVALID_AUTH", f"Salesforce login failed: {exc.code}") from exc
        except SalesforceError as exc:
            raise _translated(exc) from exc
        except (requests.exceptions.JSONDecodeError, RecursionError) as exc:  # before RequestException: a subclass
            raise salesforce_error(None, "UNEXPECTED_RESPONSE", "Salesforce answered with a body that is not JSON "
                                   f"({type(exc).__name__})") from exc
        except requests.exceptions.SSLError as exc:
            # A certificate problem is configuration, not weather: do not retry it.
            raise salesforce_error(None, "TLS_ERROR", f"TLS verification of Salesforce failed: {type(exc).__name__}") from exc
        except requests.Timeout as exc:
            raise salesforce_error(None, "Timeout", f"no answer from Salesforce within {self._timeout:g} s") from exc
        except requests.RequestException as exc:
            raise salesforce_error(None, "NETWORK_ERROR", f"cannot reach Salesforce: {type(exc).__name__}") from exc

    def _count(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        if "/services/data/" not in (response.request.path_url or ""):
            return  # logins are not API calls
        with self._lock:
            self.calls.total += 1
            if response.request.method == "GET" and "/query" in response.request.path_url:
                self.calls.queries += 1
            elif response.request.method in ("POST", "PATCH", "PUT", "DELETE"):
                self.calls.writes += 1


def _select_list(fields: Sequence[str]) -> str:
    names = list(dict.fromkeys(["Id", *fields]))
    bad = [name for name in names if not _FIELD_NAME.match(name)]
    if bad:
        raise ValueError(f"not Salesforce field names: {bad}")
    return ", ".join(names)


def _in_query(select: str, columns: Mapping[str, list[str]]) -> str:
    # Field names are validated above; only values are interpolated, and only by format_soql.
    where = " OR ".join(f"{column} IN {{}}" for column in columns)
    return format_soql(f"SELECT {select} FROM User WHERE {where}", *columns.values())


def _query_page(page: Any) -> dict[str, Any]:
    """A query answer as the API documents it, or UNEXPECTED_RESPONSE (never a KeyError later)."""
    if not (isinstance(page, dict) and isinstance(page.get("records"), list) and isinstance(page.get("done"), bool)):
        raise salesforce_error(None, "UNEXPECTED_RESPONSE", "a query answer without 'records' and 'done'")
    if not page["done"] and not _NEXT_RECORDS_URL.match(str(page.get("nextRecordsUrl"))):
        raise salesforce_error(None, "UNEXPECTED_RESPONSE", "a query answer not done without a nextRecordsUrl "
                               "of the form /services/data/vNN.N/query/<locator>")
    if not all(isinstance(r, dict) and isinstance(r.get("Id"), str) for r in page["records"]):
        raise salesforce_error(None, "UNEXPECTED_RESPONSE", "a query answer with a record that is not an object with an Id")
    return page


def _record_results(response: Any, expected: int) -> list[RecordResult]:
    if not isinstance(response, list) or len(response) != expected:
        error = salesforce_error(None, "UNEXPECTED_RESPONSE", f"composite/sobjects returned {type(response).__name__}, "
                                 f"expected a list of {expected} results")
        return [RecordResult(None, error) for _ in range(expected)]
    results = []
    for item in response:
        if not isinstance(item, dict):
            results.append(RecordResult(None, salesforce_error(
                None, "UNEXPECTED_RESPONSE", f"a composite/sobjects result is {type(item).__name__}, not an object")))
            continue
        if item.get("success"):
            if not isinstance(item.get("id"), str) or not _SALESFORCE_ID.match(item["id"]):
                # Without the id there is nothing to link; the next reconcile matches the user by Username.
                results.append(RecordResult(None, salesforce_error(
                    None, "UNEXPECTED_RESPONSE", "a successful composite/sobjects result without a Salesforce id")))
                continue
            results.append(RecordResult(item.get("id")))
            continue
        errors = [e for e in item.get("errors") or () if isinstance(e, dict)] or [{}]
        first = errors[0]
        message = "; ".join(_clean(e.get("message", "")) for e in errors)
        fields = [f for e in errors for f in (e.get("fields") or [])]
        # A failure without a statusCode is an answer we cannot read, not a network error.
        code = first.get("statusCode") if isinstance(first.get("statusCode"), str) else "UNEXPECTED_RESPONSE"
        results.append(RecordResult(item.get("id"), salesforce_error(None, code, message, fields)))
    return results


def _translated(exc: SalesforceError) -> ProvisioningError:
    """simple-salesforce's HTTP errors carry .status and .content: a JSON list of {errorCode, message,
    fields} or, for some 503s, an HTML page."""
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        first = content[0]
        return salesforce_error(exc.status, first.get("errorCode"), _clean(first.get("message", "")), first.get("fields") or ())
    text = _clean(content if isinstance(content, str) else repr(content))
    return salesforce_error(exc.status, None, text[:200] or f"HTTP {exc.status}")


def _clean(message: str) -> str:
    return " ".join(_TAG.sub(" ", str(message)).split())
