"""Import Salesforce profiles as app roles of the Entra application: read the org's assignable
profiles and the application's appRoles, plan (shared/core/profile_roles.py), then write the whole
collection, or only report with dry_run. The CLI runs it (`python -m cli import-profiles`); a timer
could run it the same way."""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Callable

from ..core.models import EntraApplication
from ..core.ports import ApplicationRoles, ProfileCatalog
from ..core.profile_roles import RoleImportPlan, plan_profile_roles

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProfileImportResult:
    application: EntraApplication  # as read before the import
    plan: RoleImportPlan
    applied: bool  # False for a dry run or when nothing needed changing


class ProfileRoleImporter:
    def __init__(self, profiles: ProfileCatalog, applications: ApplicationRoles, *, service_principal_id: str,
                 application_id: str | None = None, new_role_id: Callable[[], str] = lambda: str(uuid.uuid4())) -> None:
        self._profiles = profiles
        self._applications = applications
        self._service_principal_id = service_principal_id
        self._application_id = application_id
        self._new_role_id = new_role_id

    async def run(self, *, dry_run: bool = False) -> ProfileImportResult:
        application = await self._applications.find_application(self._application_id, self._service_principal_id)
        profiles = await self._profiles.assignable_profiles()
        plan = plan_profile_roles(application.app_roles, profiles, self._new_role_id)
        summary = ", ".join(f"{plan.count(action)} {action}" for action in ("added", "disabled", "re-enabled", "renamed"))
        if not plan.needs_write:
            log.info("profile import for application %s: nothing to do (%d profiles)", application.object_id, len(profiles))
            return ProfileImportResult(application, plan, applied=False)
        if dry_run:
            log.info("profile import for application %s (dry run): would be %s", application.object_id, summary)
            return ProfileImportResult(application, plan, applied=False)
        if plan.disable_first is not None:
            await self._applications.replace_app_roles(application.object_id, plan.disable_first)
        await self._applications.replace_app_roles(application.object_id, plan.roles)
        log.info("profile import for application %s: %s", application.object_id, summary)
        return ProfileImportResult(application, plan, applied=True)
