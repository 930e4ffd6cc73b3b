"""Microsoft Graph adapter: the Directory and Mailer ports of shared.core.ports over msgraph-sdk.

Requests are built with the SDK's request builders and sent through its request adapter (auth,
retry and redirect middleware apply), but responses are read as raw JSON: parsing Graph JSON into SDK
model objects costs ~16 ms per user against ~0.07 ms as plain JSON. Delta pages are followed by hand
(PageIterator stops at an empty page that still has a nextLink). Ids come back as lower-case strings;
SDK and httpx errors leave this module only as core errors (graph_error, DeltaTokenExpired).
`calls` counts the HTTP requests made per operation (retries inside the middleware not included); a
$batch counts once, as "batch", whatever it holds."""
from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import Counter
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import quote, urlsplit

import httpx
from azure.core.exceptions import ClientAuthenticationError
from kiota_abstractions.api_error import APIError
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from msgraph import GraphServiceClient
from msgraph.generated.groups.delta.delta_request_builder import DeltaRequestBuilder as GroupsDeltaRequestBuilder
from msgraph.generated.groups.item.members.members_request_builder import MembersRequestBuilder
from msgraph.generated.groups.item.transitive_members.graph_group.graph_group_request_builder import (
    GraphGroupRequestBuilder,
)
from msgraph.generated.groups.item.transitive_members.graph_user.graph_user_request_builder import (
    GraphUserRequestBuilder,
)
from msgraph.generated.models.body_type import BodyType
from msgraph.generated.models.email_address import EmailAddress
from msgraph.generated.models.item_body import ItemBody
from msgraph.generated.models.message import Message
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.recipient import Recipient
from msgraph.generated.service_principals.item.app_role_assigned_to.app_role_assigned_to_request_builder import (
    AppRoleAssignedToRequestBuilder,
)
from msgraph.generated.service_principals.item.service_principal_item_request_builder import (
    ServicePrincipalItemRequestBuilder,
)
from msgraph.generated.users.delta.delta_request_builder import DeltaRequestBuilder
from msgraph.generated.users.item.app_role_assignments.app_role_assignments_request_builder import (
    AppRoleAssignmentsRequestBuilder,
)
from msgraph.generated.users.item.send_mail.send_mail_post_request_body import SendMailPostRequestBody
from msgraph.generated.users.item.user_item_request_builder import UserItemRequestBuilder

from shared.core.errors import ConfigurationError, DeltaTokenExpired, ProvisioningError, graph_error
from shared.core.models import (
    AppRole,
    AppRoleAssignment,
    DeltaPage,
    EntraUser,
    EntraUserState,
    GroupDeltaPage,
    MemberChange,
    UserChange,
)

from .graph_batch import MAX_BATCH_REQUESTS, BatchItemResult, BatchPost, BatchRead, get_batch, relative_url
from .graph_client import GraphRetryPolicy, StaticTokenCredential, build_graph_client, close_graph_client

__all__ = ["GraphDirectory", "GraphMailer", "GraphRetryPolicy", "StaticTokenCredential", "build_graph_client",
           "close_graph_client"]

logger = logging.getLogger(__name__)

_ERROR_MAP: dict[str, Any] = {"XXX": ODataError}
_EXPIRED_TOKEN_CODES = frozenset({"syncStateNotFound", "resyncRequired", "Directory_ExpiredPageToken"})
_USER_TYPE = "#microsoft.graph.user"
MAX_PAGE_SIZE = 999
CHECK_MEMBER_GROUPS_MAX = 20  # group ids per checkMemberGroups call
MAX_DELTA_FILTER_IDS = 50  # ids per groups/delta $filter


class GraphDirectory:
    """Directory over Graph. `page_size` is the $top of list calls (Graph allows 1..999). For
    user_states, `batch_concurrency` bounds the $batch calls in flight and `batch_retry` governs the
    re-sending of throttled batch items (the SDK's retry middleware does not see items)."""

    def __init__(self, client: GraphServiceClient, *, page_size: int = MAX_PAGE_SIZE,
                 calls: Counter[str] | None = None, batch_concurrency: int = 4,
                 batch_retry: GraphRetryPolicy = GraphRetryPolicy()) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ConfigurationError(f"Graph page size must be 1..{MAX_PAGE_SIZE}, got {page_size}")
        if batch_concurrency < 1:
            raise ConfigurationError(f"Graph batch concurrency must be at least 1, got {batch_concurrency}")
        self._client = client
        self._page_size = page_size
        self._batch_concurrency = batch_concurrency
        self._batch_retry = batch_retry
        self._base_url = client.request_adapter.base_url.rstrip("/")
        base = urlsplit(self._base_url)
        self._origin = f"{base.scheme}://{base.netloc}".lower()
        self.calls: Counter[str] = calls if calls is not None else Counter()

    async def users_delta_page(self, link: str | None, select: Sequence[str]) -> DeltaPage:
        delta = self._client.users.delta

        def first() -> RequestInformation:
            query = DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(select=_with_id(select))
            return delta.to_get_request_information(RequestConfiguration(query_parameters=query))

        items, next_link, delta_link = await self._delta_page(delta, link, first, "users")
        changes = tuple(UserChange(_object_id(item), (item.get("@removed") or {}).get("reason")) for item in items)
        return DeltaPage(changes, next_link=next_link, delta_link=delta_link)

    async def groups_delta_page(self, link: str | None, group_ids: Sequence[str]) -> GroupDeltaPage:
        delta = self._client.groups.delta

        def first() -> RequestInformation:
            if not 1 <= len(group_ids) <= MAX_DELTA_FILTER_IDS:
                raise ConfigurationError(f"groups/delta filters 1..{MAX_DELTA_FILTER_IDS} groups, got {len(group_ids)}")
            query = GroupsDeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
                select=["id", "members"], filter=" or ".join(f"id eq '{_guid(g)}'" for g in group_ids))
            return delta.to_get_request_information(RequestConfiguration(query_parameters=query))

        items, next_link, delta_link = await self._delta_page(delta, link, first, "groups")
        changes = tuple(MemberChange(_object_id(group), _object_id(member), _member_type(member), "@removed" in member)
                        for group in items for member in _members_delta(group))
        return GroupDeltaPage(changes, next_link=next_link, delta_link=delta_link)

    async def _delta_page(self, delta: Any, link: str | None, first: Callable[[], RequestInformation],
                          resource: str) -> tuple[list[dict[str, Any]], str | None, str | None]:
        """One page of {resource}/delta: the first request when link is None, else the stored link.
        Returns (items, nextLink, deltaLink)."""
        if link is None:
            info = first()
        else:
            if not link.lower().startswith(self._origin + "/"):
                # A link from another cloud or emulator cannot be resumed here: start over.
                raise DeltaTokenExpired(f"the stored {resource} delta link belongs to another Graph endpoint")
            info = delta.with_url(link).to_get_request_information()
        data = await self._get(info, f"{resource}_delta", delta=True)
        assert data is not None
        next_link, delta_link = data.get("@odata.nextLink"), data.get("@odata.deltaLink")
        if bool(next_link) == bool(delta_link):
            raise graph_error(None, "MalformedResponse", f"a {resource}/delta page needs exactly one of nextLink and deltaLink")
        return _value(data), next_link, delta_link

    async def group_subgroup_ids(self, group_id: str) -> list[str]:
        builder = self._client.groups.by_group_id(group_id).transitive_members.graph_group
        query = GraphGroupRequestBuilder.GraphGroupRequestBuilderGetQueryParameters(select=["id"], top=self._page_size,
                                                                                   count=True)
        return await self._transitive_ids(builder, query, "group_transitive_groups")

    async def group_transitive_user_ids(self, group_id: str) -> list[str]:
        builder = self._client.groups.by_group_id(group_id).transitive_members.graph_user
        query = GraphUserRequestBuilder.GraphUserRequestBuilderGetQueryParameters(select=["id"], top=self._page_size,
                                                                                 count=True)
        return await self._transitive_ids(builder, query, "group_transitive_users")

    async def _transitive_ids(self, builder: Any, query: Any, operation: str) -> list[str]:
        """Every page; an OData cast on transitiveMembers is an advanced query, so each request (next
        pages too) carries ConsistencyLevel: eventual, and the first $count=true."""
        config = RequestConfiguration(query_parameters=query)
        config.headers.add("ConsistencyLevel", "eventual")
        info = builder.to_get_request_information(config)
        ids: list[str] = []
        while True:
            data = await self._get(info, operation)
            assert data is not None
            ids += [_object_id(item) for item in _value(data)]
            next_link = data.get("@odata.nextLink")
            if not next_link:
                return ids
            info = builder.with_url(next_link).to_get_request_information()
            info.headers.try_add("ConsistencyLevel", "eventual")

    async def app_role_assignments(self, service_principal_id: str) -> list[AppRoleAssignment]:
        builder = self._client.service_principals.by_service_principal_id(service_principal_id).app_role_assigned_to
        query = AppRoleAssignedToRequestBuilder.AppRoleAssignedToRequestBuilderGetQueryParameters(top=self._page_size)
        items = await self._all(builder, builder.to_get_request_information(RequestConfiguration(query_parameters=query)),
                                "app_role_assigned_to")
        return [_assignment(item) for item in items]

    async def group_member_ids(self, group_id: str) -> list[str]:
        builder = self._client.groups.by_group_id(group_id).members
        query = MembersRequestBuilder.MembersRequestBuilderGetQueryParameters(select=["id"], top=self._page_size)
        items = await self._all(builder, builder.to_get_request_information(RequestConfiguration(query_parameters=query)),
                                "group_members")
        return [_object_id(item) for item in items if item.get("@odata.type") == _USER_TYPE]

    async def app_roles(self, service_principal_id: str) -> list[AppRole]:
        builder = self._client.service_principals.by_service_principal_id(service_principal_id)
        query = ServicePrincipalItemRequestBuilder.ServicePrincipalItemRequestBuilderGetQueryParameters(
            select=["id", "appRoles"])
        data = await self._get(builder.to_get_request_information(RequestConfiguration(query_parameters=query)),
                               "service_principal")
        assert data is not None
        try:
            return [
                AppRole(str(role["id"]).lower(), role.get("displayName") or "", role.get("value"),
                        bool(role.get("isEnabled", True)))
                for role in data.get("appRoles") or []
            ]
        except (KeyError, TypeError, AttributeError):
            raise graph_error(None, "MalformedResponse", "an appRole without an id") from None

    async def user_state(self, user_id: str, select: Sequence[str], service_principal_id: str) -> EntraUserState:
        user_key = user_id.lower()
        data = await self._get(self._user_request(user_key, select), "user", missing_ok=True)
        if data is None:
            return EntraUserState(user_key, None)
        items = await self._all(self._assignments_builder(user_key),
                                self._assignments_request(user_key, service_principal_id),
                                "user_app_role_assignments", missing_ok=True)
        if items is None:  # deleted between the two reads
            return EntraUserState(user_key, None)
        return _user_state(user_key, data, items, service_principal_id)

    async def user_states(self, user_ids: Sequence[str], select: Sequence[str], service_principal_id: str, *,
                          group_ids: Sequence[str] = ()) -> dict[str, EntraUserState | ProvisioningError]:
        """user_state for many users: the reads of as many users as fit in a $batch of 20 (two each, plus
        one checkMemberGroups per 20 of `group_ids` for member_of), `batch_concurrency` batches at a
        time. Keyed by lower-cased user id; a user whose reads failed maps to the error user_state
        would have raised, so one bad user or batch never hides the others' states."""
        keys = list(dict.fromkeys(user_id.lower() for user_id in user_ids))
        groups = list(dict.fromkeys(g.lower() for g in group_ids))
        group_chunks = [groups[start:start + CHECK_MEMBER_GROUPS_MAX] for start in range(0, len(groups), CHECK_MEMBER_GROUPS_MAX)]
        per_batch = MAX_BATCH_REQUESTS // (2 + len(group_chunks))
        if per_batch < 1:
            raise ConfigurationError(f"{len(groups)} groups are too many to check in one Graph batch per user")
        slots = asyncio.Semaphore(self._batch_concurrency)

        async def one_batch(chunk: list[str]) -> dict[str, EntraUserState | ProvisioningError]:
            async with slots:
                return await self._user_states_batch(chunk, select, service_principal_id, group_chunks)

        states: dict[str, EntraUserState | ProvisioningError] = {}
        for part in await asyncio.gather(*(one_batch(keys[start:start + per_batch])
                                           for start in range(0, len(keys), per_batch))):
            states.update(part)
        return states

    async def _user_states_batch(self, user_keys: list[str], select: Sequence[str], service_principal_id: str,
                                 group_chunks: list[list[str]]) -> dict[str, EntraUserState | ProvisioningError]:
        reads: dict[str, BatchRead] = {}
        for index, key in enumerate(user_keys):
            reads[f"{index}.user"] = relative_url(self._user_request(key, select), self._base_url)
            reads[f"{index}.roles"] = relative_url(self._assignments_request(key, service_principal_id), self._base_url)
            for n, chunk in enumerate(group_chunks):
                reads[f"{index}.groups{n}"] = BatchPost(f"/users/{quote(key)}/checkMemberGroups", {"groupIds": chunk})
        try:
            answers = await get_batch(self._post_batch, reads, self._batch_retry)
        except ProvisioningError as exc:
            return {key: exc for key in user_keys}
        states: dict[str, EntraUserState | ProvisioningError] = {}
        for index, key in enumerate(user_keys):
            try:
                state = await self._batched_user_state(key, answers[f"{index}.user"], answers[f"{index}.roles"],
                                                       service_principal_id)
                if state.user is not None and group_chunks:
                    state = _with_groups(state, [answers[f"{index}.groups{n}"] for n in range(len(group_chunks))])
                states[key] = state
            except ProvisioningError as exc:
                states[key] = exc
        return states

    async def _batched_user_state(self, user_key: str, user: BatchItemResult, roles: BatchItemResult,
                                  service_principal_id: str) -> EntraUserState:
        """What user_state concludes from the same two answers (404 first, as it reads the user first)."""
        if user.status == 404:
            return EntraUserState(user_key, None)
        if not user.ok:
            raise user.error()
        if roles.status == 404:  # deleted between the two reads
            return EntraUserState(user_key, None)
        if not roles.ok:
            raise roles.error()
        page = _json_body(roles.body)
        items = _value(page)
        next_link = page.get("@odata.nextLink")
        if next_link:
            builder = self._assignments_builder(user_key)
            rest = await self._all(builder, builder.with_url(next_link).to_get_request_information(),
                                   "user_app_role_assignments", missing_ok=True)
            if rest is None:
                return EntraUserState(user_key, None)
            items = items + rest
        return _user_state(user_key, _json_body(user.body), items, service_principal_id)

    def _user_request(self, user_key: str, select: Sequence[str]) -> RequestInformation:
        query = UserItemRequestBuilder.UserItemRequestBuilderGetQueryParameters(select=_with_id(select))
        return self._client.users.by_user_id(user_key).to_get_request_information(
            RequestConfiguration(query_parameters=query))

    def _assignments_builder(self, user_key: str) -> AppRoleAssignmentsRequestBuilder:
        return self._client.users.by_user_id(user_key).app_role_assignments

    def _assignments_request(self, user_key: str, service_principal_id: str) -> RequestInformation:
        query = AppRoleAssignmentsRequestBuilder.AppRoleAssignmentsRequestBuilderGetQueryParameters(
            filter=f"resourceId eq {service_principal_id.lower()}", top=self._page_size)
        return self._assignments_builder(user_key).to_get_request_information(RequestConfiguration(query_parameters=query))

    async def _post_batch(self, envelope: dict[str, Any]) -> dict[str, Any]:
        info = RequestInformation(Method.POST)
        info.url = self._base_url + "/$batch"
        info.headers.try_add("Accept", "application/json")
        info.set_stream_content(json.dumps(envelope).encode(), "application/json")
        data = await self._get(info, "batch")
        assert data is not None
        return data

    # ----- transport ------------------------------------------------------------------------------
    async def _get(self, info: RequestInformation, operation: str, *, delta: bool = False,
                   missing_ok: bool = False) -> dict[str, Any] | None:
        """Send `info` (a GET, or the $batch POST) and read the JSON object it answers."""
        self.calls[operation] += 1
        try:
            raw = await self._client.request_adapter.send_primitive_async(info, "bytes", _ERROR_MAP)
        except APIError as exc:
            status, code = exc.response_status_code, _error_code(exc)
            if missing_ok and status == 404:
                return None
            if delta and (status == 410 or status == 400 and code in _EXPIRED_TOKEN_CODES):
                logger.warning("%s token no longer valid (HTTP %s, %s): full sync needed", operation, status, code)
                raise DeltaTokenExpired(f"HTTP {status} {code or ''}".strip()) from exc
            raise _translate(exc) from exc
        except (httpx.HTTPError, ClientAuthenticationError) as exc:
            raise _translate(exc) from exc
        return _json_object(raw)

    async def _all(self, builder: Any, info: RequestInformation, operation: str, *,
                   missing_ok: bool = False) -> list[dict[str, Any]] | None:
        """Every item of a paged list, following nextLinks (with_url ignores path and query)."""
        items: list[dict[str, Any]] = []
        while True:
            data = await self._get(info, operation, missing_ok=missing_ok)
            if data is None:
                return None
            items.extend(_value(data))
            next_link = data.get("@odata.nextLink")
            if not next_link:
                return items
            info = builder.with_url(next_link).to_get_request_information()


class GraphMailer:
    """Mailer over Graph sendMail (application permission Mail.Send). Returns once Graph answered 202."""

    def __init__(self, client: GraphServiceClient, *, calls: Counter[str] | None = None,
                 save_to_sent_items: bool = True) -> None:
        self._client = client
        self._save = save_to_sent_items
        self.calls: Counter[str] = calls if calls is not None else Counter()

    async def send_mail(self, sender: str, to: Sequence[str], subject: str, body: str) -> None:
        if not to:
            raise ConfigurationError("sendMail needs at least one recipient")
        request_body = SendMailPostRequestBody(
            message=Message(
                subject=subject,
                body=ItemBody(content_type=BodyType.Text, content=body),
                to_recipients=[Recipient(email_address=EmailAddress(address=address)) for address in to],
            ),
            save_to_sent_items=self._save,
        )
        self.calls["send_mail"] += 1
        with _graph_errors():
            await self._client.users.by_user_id(sender).send_mail.post(request_body)


# ----- translation ----------------------------------------------------------------------------------
@contextmanager
def _graph_errors() -> Iterator[None]:
    try:
        yield
    except (APIError, httpx.HTTPError, ClientAuthenticationError) as exc:
        raise _translate(exc) from exc


def _translate(exc: Exception) -> ProvisioningError:
    if isinstance(exc, APIError):
        retry_after = _retry_after(exc.response_headers)
        if isinstance(exc, ODataError) and exc.error is not None:
            return graph_error(exc.response_status_code, exc.error.code, exc.error.message or "", retry_after)
        # A body that is not a Graph error envelope, e.g. an HTML page from a gateway.
        return graph_error(exc.response_status_code, None, "Graph answered with a non-JSON error body", retry_after)
    if isinstance(exc, ClientAuthenticationError):
        # Token acquisition failed (managed identity endpoint hiccup or misconfiguration): retry.
        return graph_error(None, "CredentialUnavailable", "could not get a token for Graph")
    return graph_error(None, type(exc).__name__, "Graph request failed before a response arrived")


def _error_code(exc: APIError) -> str | None:
    return exc.error.code if isinstance(exc, ODataError) and exc.error is not None else None


def _retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date; the retry middleware has already waited for it


# ----- JSON shapes ----------------------------------------------------------------------------------
def _json_object(raw: bytes | None) -> dict[str, Any]:
    try:
        data = json.loads(raw or b"")
    except ValueError:
        raise graph_error(None, "MalformedResponse", "Graph answered 2xx with a body that is not JSON") from None
    if not isinstance(data, dict):
        raise graph_error(None, "MalformedResponse", "Graph answered 2xx with JSON that is not an object")
    return data


def _json_body(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise graph_error(None, "MalformedResponse", "a $batch item answered 2xx with a body that is not a JSON object")
    return body


def _value(data: dict[str, Any]) -> list[dict[str, Any]]:
    value = data.get("value")
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise graph_error(None, "MalformedResponse", "a Graph collection without a list of objects in 'value'")
    return value


def _object_id(item: dict[str, Any]) -> str:
    value = item.get("id")
    if not value:
        raise graph_error(None, "MalformedResponse", "a Graph object without an id")
    return str(value).lower()


def _user_state(user_key: str, data: dict[str, Any], assignments: list[dict[str, Any]],
                service_principal_id: str) -> EntraUserState:
    attributes = {name: value for name, value in data.items() if not name.startswith("@odata.")}
    attributes["id"] = _object_id(data)
    # The filter is the server's job; checking again costs nothing and guards against a lax one.
    resource = service_principal_id.lower()
    roles = frozenset(_assignment(item).app_role_id for item in assignments
                      if str(item.get("resourceId", "")).lower() == resource)
    return EntraUserState(user_key, EntraUser(attributes["id"], attributes), roles)


def _with_groups(state: EntraUserState, answers: list[BatchItemResult]) -> EntraUserState:
    """The state with member_of from checkMemberGroups answers (each a list of the asked ids the user
    is a member of, transitively); a user deleted meanwhile (404) is gone."""
    member_of: set[str] = set()
    for answer in answers:
        if answer.status == 404:
            return EntraUserState(state.user_id, None)
        if not answer.ok:
            raise answer.error()
        ids = _json_body(answer.body).get("value")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise graph_error(None, "MalformedResponse", "checkMemberGroups answered without a list of ids")
        member_of.update(i.lower() for i in ids)
    return replace(state, member_of=frozenset(member_of))


def _members_delta(group: dict[str, Any]) -> list[dict[str, Any]]:
    members = group.get("members@delta", [])
    if not isinstance(members, list) or not all(isinstance(m, dict) for m in members):
        raise graph_error(None, "MalformedResponse", "members@delta is not a list of objects")
    return members


def _member_type(member: dict[str, Any]) -> str:
    kind = member.get("@odata.type")
    return {"#microsoft.graph.user": "user", "#microsoft.graph.group": "group"}.get(kind, "other")  # type: ignore[arg-type]


def _guid(value: str) -> str:
    """A group id as it may appear inside $filter: only a GUID, so nothing else reaches the query."""
    if not re.fullmatch(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", value):
        raise ConfigurationError(f"not a group object id: {value!r}")
    return value.lower()


def _with_id(select: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(["id", *select]))


def _assignment(item: dict[str, Any]) -> AppRoleAssignment:
    try:
        # Assignment ids are case-sensitive base64url strings: kept as they are.
        return AppRoleAssignment(str(item["id"]), str(item["principalId"]).lower(), item["principalType"],
                                 str(item["appRoleId"]).lower())
    except KeyError as missing:
        raise graph_error(None, "MalformedResponse", f"an appRoleAssignment without {missing}") from None
