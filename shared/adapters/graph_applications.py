"""The ApplicationRoles port over msgraph-sdk: read and replace the appRoles of the Salesforce app's
application object (Graph permission Application.ReadWrite.OwnedBy, with the identity an owner of
the app registration, or Application.ReadWrite.All).

PATCH /applications/{id} replaces the whole appRoles collection, so every role is sent back with all
its writable properties; `origin` is read-only and never sent. SDK errors leave as core errors."""
from __future__ import annotations

import uuid
from collections import Counter
from typing import Sequence

from kiota_abstractions.api_error import APIError
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph import GraphServiceClient
from msgraph.generated.applications.item.application_item_request_builder import ApplicationItemRequestBuilder
from msgraph.generated.applications_with_app_id.applications_with_app_id_request_builder import (
    ApplicationsWithAppIdRequestBuilder,
)
from msgraph.generated.models.app_role import AppRole
from msgraph.generated.models.application import Application
from msgraph.generated.service_principals.item.service_principal_item_request_builder import (
    ServicePrincipalItemRequestBuilder,
)

from shared.core.errors import graph_error
from shared.core.models import AppRoleDefinition, EntraApplication

from .graph import _graph_errors

_SELECT = ["id", "appId", "appRoles"]


class GraphApplications:
    def __init__(self, client: GraphServiceClient, *, calls: Counter[str] | None = None) -> None:
        self._client = client
        self.calls: Counter[str] = calls if calls is not None else Counter()

    async def find_application(self, application_id: str | None, service_principal_id: str) -> EntraApplication:
        """By object id, else by appId (both are GUIDs, so the object id is tried first); with no
        application_id, the application whose appId the service principal has."""
        if application_id is None:
            query = ServicePrincipalItemRequestBuilder.ServicePrincipalItemRequestBuilderGetQueryParameters(
                select=["id", "appId"])
            self.calls["service_principal"] += 1
            with _graph_errors():
                sp = await self._client.service_principals.by_service_principal_id(service_principal_id).get(
                    RequestConfiguration(query_parameters=query))
            if sp is None or not sp.app_id:
                raise graph_error(None, "MalformedResponse", "a service principal without an appId")
            return await self._by_app_id(sp.app_id)
        query = ApplicationItemRequestBuilder.ApplicationItemRequestBuilderGetQueryParameters(select=_SELECT)
        self.calls["application"] += 1
        with _graph_errors():
            try:
                found = await self._client.applications.by_application_id(application_id).get(
                    RequestConfiguration(query_parameters=query))
            except APIError as exc:
                if exc.response_status_code != 404:
                    raise
                found = None  # not an object id: try it as the appId
        if found is None:
            return await self._by_app_id(application_id)
        return _application(found)

    async def replace_app_roles(self, object_id: str, roles: Sequence[AppRoleDefinition]) -> None:
        body = Application(app_roles=[
            AppRole(id=uuid.UUID(role.id), display_name=role.display_name, value=role.value,
                    description=role.description, allowed_member_types=list(role.allowed_member_types),
                    is_enabled=role.is_enabled)
            for role in roles
        ])
        self.calls["application_update"] += 1
        with _graph_errors():
            await self._client.applications.by_application_id(object_id).patch(body)

    async def _by_app_id(self, app_id: str) -> EntraApplication:
        query = ApplicationsWithAppIdRequestBuilder.ApplicationsWithAppIdRequestBuilderGetQueryParameters(select=_SELECT)
        self.calls["application"] += 1
        with _graph_errors():
            found = await self._client.applications_with_app_id(app_id).get(RequestConfiguration(query_parameters=query))
        return _application(found)


def _application(found: Application | None) -> EntraApplication:
    if found is None or not found.id or not found.app_id:
        raise graph_error(None, "MalformedResponse", "an application without an id or appId")
    roles = []
    for role in found.app_roles or []:
        if role.id is None or not role.display_name:
            raise graph_error(None, "MalformedResponse", "an appRole without an id or displayName")
        roles.append(AppRoleDefinition(str(role.id).lower(), role.display_name, role.value, role.description,
                                       tuple(role.allowed_member_types or ()), bool(role.is_enabled)))
    return EntraApplication(str(found.id).lower(), str(found.app_id).lower(), tuple(roles))
