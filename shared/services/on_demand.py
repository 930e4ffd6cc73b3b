"""Provision one user now, in the request, and say what happened at each step, like the connector's
"Provision on demand": connection, import, scope, match, action.

It runs the Provisioner's own reconcile (not the queue), so it is the same code path as the queue
trigger. The report may show the mapped Salesforce field values, since an admin asked for this user;
logs carry only the object id, attribute names and codes."""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

from ..core.errors import ProvisioningError
from ..core.guidance import guidance_for
from ..core.ports import Directory, SalesforceOrg
from .provision import Provisioner, UserTrace

log = logging.getLogger(__name__)

StepName = Literal["connection", "import", "scope", "match", "action"]
StepStatus = Literal["success", "failure", "skipped"]
STEPS: tuple[StepName, ...] = ("connection", "import", "scope", "match", "action")


@dataclass(frozen=True, slots=True)
class Step:
    name: StepName
    status: StepStatus
    detail: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"step": self.name, "status": self.status, "detail": self.detail, **self.data}


@dataclass(frozen=True, slots=True)
class OnDemandReport:
    entra_id: str
    steps: tuple[Step, ...]

    @property
    def connected(self) -> bool:
        return self.steps[0].status == "success"

    def step(self, name: StepName) -> Step:
        return next(s for s in self.steps if s.name == name)

    def to_json(self) -> dict[str, Any]:
        failed = [s.name for s in self.steps if s.status == "failure"]
        return {"entraId": self.entra_id, "succeeded": not failed, "steps": [s.to_json() for s in self.steps]}


def error_data(error: ProvisioningError) -> dict[str, Any]:
    """An error as the admin needs it: the vendor's code, its message, and what to do about it."""
    guidance = guidance_for(error.code)
    return {"error": {"code": error.code, "message": error.message, "system": error.system,
                      "transient": error.transient, "connectorCode": guidance.connector_code,
                      "guidance": guidance.advice}}


def _failed(name: StepName, error: ProvisioningError) -> Step:
    retry = " (temporary: try again shortly)" if error.transient else ""
    return Step(name, "failure", f"{error.code}: {error.message}{retry}", error_data(error))


def _skipped(names: tuple[StepName, ...]) -> list[Step]:
    return [Step(n, "skipped", "not reached: an earlier step failed") for n in names]


class OnDemandProvisioner:
    def __init__(self, directory: Directory, org: SalesforceOrg, provisioner: Provisioner,
                 service_principal_id: str) -> None:
        self._directory = directory
        self._org = org
        self._provisioner = provisioner
        self._service_principal_id = service_principal_id

    async def provision(self, entra_id: str) -> OnDemandReport:
        """`entra_id` must already be a valid object id (the HTTP function checks it)."""
        entra_id = entra_id.lower()
        connection = await self._connection()
        if connection.status != "success":
            return OnDemandReport(entra_id, (connection, *_skipped(STEPS[1:])))
        label = f"on-demand/{uuid.uuid4()}"  # labels the audit record, as a message id does
        # Transient failures are not retried here (the admin sees them and asks again), so they are not
        # audited as "retrying"; the response carries them.
        [trace] = await self._provisioner.trace([entra_id], message_ids={entra_id: label}, audit_transient=False)
        error = trace.result.error
        if error is not None and error.transient:
            log.warning("on-demand entra=%s failed transiently: %s", entra_id, error.code)
        return OnDemandReport(entra_id, (connection, *self._steps(trace)))

    async def _connection(self) -> Step:
        """Like the connector's Test Connection: read the app's roles in Entra, query Salesforce's profiles."""
        try:
            roles = await self._directory.app_roles(self._service_principal_id)
        except ProvisioningError as exc:
            return _failed("connection", exc)
        try:
            profiles = await self._org.profile_ids()
        except ProvisioningError as exc:
            return _failed("connection", exc)
        return Step("connection", "success",
                    f"Graph: {len(roles)} app roles of the Salesforce app; Salesforce: {len(profiles)} profiles")

    def _steps(self, t: UserTrace) -> list[Step]:
        error, operation = t.result.error, t.result.operation
        if t.state is None:  # the Graph read (or the per-user lease) failed
            assert error is not None
            return [_failed("import", error), *_skipped(STEPS[2:])]
        user = t.state.user
        if user is None:
            imported = Step("import", "success", "not found in Entra: treated as deleted", {"objectId": t.result.entra_id})
        else:
            read = sorted(user.attributes)
            empty = sorted(k for k, v in user.attributes.items() if v in (None, ""))
            data: dict[str, Any] = {"objectId": user.id, "attributesRead": read, "attributesEmpty": empty}
            if t.desired is not None:
                data["mappedFields"] = dict(t.desired)
            imported = Step("import", "success", f"read {len(read)} attributes, {len(empty)} empty", data)
        if t.scope_reason is None and t.desired is None:  # in scope, but the mapping failed
            assert error is not None
            return [Step("import", "failure", f"mapping failed: {error.code}: {error.message}",
                         {**imported.data, **error_data(error)}), *_skipped(STEPS[2:])]
        in_scope = t.scope_reason is None
        scope = Step("scope", "success",
                     "in scope: enabled and assigned to the Salesforce app with a role" if in_scope
                     else f"out of scope: {t.scope_reason}", {"inScope": in_scope})
        if operation is None:  # matching (the SOQL query) failed
            assert error is not None
            return [imported, scope, _failed("match", error), *_skipped(STEPS[4:])]
        return [imported, scope, self._match(t), self._action(t)]

    @staticmethod
    def _match(t: UserTrace) -> Step:
        if t.current is None:
            return Step("match", "success", "no matching Salesforce user", {"matchedBy": None})
        linked = t.link is not None and t.link.salesforce_id == t.current.id
        how = "link" if linked else "Username"
        detail = "linked Salesforce user" if linked else "Salesforce user matched by Username"
        return Step("match", "success", f"{detail} {t.current.id}", {"matchedBy": how, "salesforceId": t.current.id})

    @staticmethod
    def _action(t: UserTrace) -> Step:
        op, error = t.result.operation, t.result.error
        assert op is not None
        changed = sorted(op.changes)
        data: dict[str, Any] = {"action": op.action, "salesforceId": op.salesforce_id, "modifiedProperties": changed}
        granted = t.result.permission_sets
        if granted is not None:
            data.update(permissionSetsAdded=list(granted.added), permissionSetsRemoved=list(granted.removed))
        if error is not None:
            failed = _failed("action", error)
            return Step("action", "failure", f"{op.action} failed: {failed.detail}", {**data, **failed.data})
        assigned = "".join(f"; permission sets {sign}{', '.join(keys)}" for sign, keys in
                           (("+", granted.added), ("-", granted.removed)) if keys) if granted else ""
        if not op.is_write:
            return Step("action", "success" if assigned else "skipped", f"{op.action}: {op.reason}{assigned}", data)
        fields = f" ({', '.join(changed)})" if changed and op.action != "create" else ""
        return Step("action", "success", f"{op.action} Salesforce user {op.salesforce_id}{fields}{assigned}", data)
