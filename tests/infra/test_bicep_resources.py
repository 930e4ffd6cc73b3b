"""The properties of infra/ that the app's behaviour and security depend on. checkov does not read
most of them (it has no Service Bus checks, and reads parameters as unknown), so they are asserted here
on the same parse checkov uses."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from .bicep import INFRA, bicep_files, parse, resource

APP = INFRA / "app"

# Built-in role definition ids, from Azure's documentation of built-in roles.
ROLE_IDS = {
    "serviceBusDataSender": "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39",
    "serviceBusDataReceiver": "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0",
    "storageBlobDataOwner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "storageTableDataContributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "storageQueueDataContributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "keyVaultSecretsUser": "4633458b-17de-408a-b874-0445c86b69e6",
    "keyVaultSecretsOfficer": "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
    "monitoringMetricsPublisher": "3913510d-42f4-4e42-8a64-420c390055eb",
}


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_parses(path: Path) -> None:
    assert parse(path)["resources"] or parse(path)["outputs"]


def test_main_wires_every_module() -> None:
    modules = {m["detail"]["path"] for m in parse(INFRA / "main.bicep")["modules"].values()}
    assert {f"app/{p.name}" for p in APP.glob("*.bicep")} == modules


def test_storage_accepts_no_shared_keys_and_holds_the_deployment_container() -> None:
    storage = resource(APP / "storage.bicep", "storage")["properties"]
    assert storage["allowSharedKeyAccess"] is False
    assert storage["allowBlobPublicAccess"] is False
    assert storage["minimumTlsVersion"] == "TLS1_2"
    container = resource(APP / "storage.bicep", "deploymentContainer")
    assert container["name"] == "deploymentContainerName" and container["properties"]["publicAccess"] == "None"


def test_service_bus_is_entra_only_and_the_queue_matches_the_apps_contract() -> None:
    namespace = resource(APP / "servicebus.bicep", "namespace")
    assert namespace["sku"]["name"] == "Standard"
    assert namespace["properties"]["disableLocalAuth"] is True
    queue = resource(APP / "servicebus.bicep", "queue")["properties"]
    assert queue["maxDeliveryCount"] == 10
    assert queue["requiresDuplicateDetection"] is True
    assert queue["duplicateDetectionHistoryTimeWindow"] == "PT10M"
    assert queue["lockDuration"] == "PT1M"
    assert queue["deadLetteringOnMessageExpiration"] is True


def test_monitoring_and_key_vault_take_entra_auth_only() -> None:
    assert resource(APP / "monitoring.bicep", "applicationInsights")["properties"]["DisableLocalAuth"] is True
    assert resource(APP / "monitoring.bicep", "logAnalytics")["properties"]["features"]["disableLocalAuth"] is True
    vault = resource(APP / "keyvault.bicep", "vault")["properties"]
    assert vault["enableRbacAuthorization"] is True and vault["enableSoftDelete"] is True


def test_function_app_runs_python_311_on_flex_consumption_as_the_user_assigned_identity() -> None:
    plan = resource(APP / "function-app.bicep", "plan")
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    site = resource(APP / "function-app.bicep", "functionApp")
    assert site["identity"]["type"] == "UserAssigned"
    properties = site["properties"]
    assert properties["httpsOnly"] is True
    assert properties["keyVaultReferenceIdentity"] == "identityId"
    config = properties["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert set(config["scaleAndConcurrency"]) == {"maximumInstanceCount", "instanceMemoryMB"}
    assert config["deployment"]["storage"]["authentication"] == {
        "type": "UserAssignedIdentity", "userAssignedIdentityResourceId": "identityId",
    }
    assert site["tags"]["function"]["parameters"]["arg_2"] == {"'azd-service-name'": "api"}
    azure_yaml = (INFRA.parent / "azure.yaml").read_text()
    assert re.search(r"^services:\n  api:.*\n    project: \.\n    language: python\n    host: function$", azure_yaml, re.M)


def _role_assignments() -> dict[str, list[tuple[str, str, str]]]:
    """Symbolic name → [(scope, principal, role key)] with the guid() name's arguments checked."""
    module = parse(APP / "rbac.bicep")
    roles = module["variables"]["roles"]["value"]
    assert roles == ROLE_IDS
    found: dict[str, list[tuple[str, str, str]]] = {}
    for symbol, declaration in module["resources"].items():
        if declaration["type"] != "Microsoft.Authorization/roleAssignments":
            continue
        body = declaration["config"]
        loop_roles: list[Any] | None = None
        if "loop_type" in body:
            loop_roles = body["loop_type"]["detail"]["array_name"]
            body = body["config"]
        elif "condition" in body:
            body = body["config"]
        name = body["name"]["function"]
        assert name["type"] == "guid"
        base = name["parameters"]["base_string"]["operator"]["operands"]
        assert base["operand_2"] == "id" and base["operand_1"] == body["scope"], f"{symbol}: guid(scope.id, ...)"
        principal = name["parameters"]["extra_string_1"]
        assert principal == body["properties"]["principalId"], f"{symbol}: guid(..., principal, ...)"
        role_argument = name["parameters"]["extra_string_2"]
        role_definition = body["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
        assert role_argument == role_definition, f"{symbol}: guid(..., role) names the assigned role"
        keys = [_role_key(r) for r in loop_roles] if loop_roles is not None else [_role_key(role_argument)]
        found[symbol] = [(body["scope"], principal, key) for key in keys]
    return found


def _role_key(expression: Any) -> str:
    operands = expression["operator"]["operands"]
    assert operands["operand_1"] == "roles"
    return operands["operand_2"]


def test_role_assignments_are_least_privilege_and_named_by_scope_principal_and_role() -> None:
    granted = {grant for grants in _role_assignments().values() for grant in grants}
    assert granted == {
        ("serviceBus", "principalId", "serviceBusDataSender"),
        ("serviceBus", "principalId", "serviceBusDataReceiver"),
        ("storage", "principalId", "storageBlobDataOwner"),
        ("storage", "principalId", "storageQueueDataContributor"),
        ("storage", "principalId", "storageTableDataContributor"),
        ("vault", "principalId", "keyVaultSecretsUser"),
        ("applicationInsights", "principalId", "monitoringMetricsPublisher"),
        ("vault", "deployerPrincipalId", "keyVaultSecretsOfficer"),  # only when a deployer is given
    }
    assert parse(APP / "rbac.bicep")["resources"]["deployerSecretsOfficer"]["config"]["condition"] is not None


def test_alerts_cover_dead_letters_failures_and_a_missing_detect_cycle() -> None:
    dead_letters = resource(APP / "alerts.bicep", "deadLettersStuck")["properties"]["criteria"]["allOf"][0]
    assert dead_letters["metricName"] == "DeadletteredMessages"
    assert dead_letters["dimensions"][0] == {"name": "EntityName", "operator": "Include", "values": ["serviceBusQueueName"]}
    failures = resource(APP / "alerts.bicep", "functionFailures")["properties"]["criteria"]["allOf"][0]
    assert failures["metricName"] == "requests/failed"
    cycle = resource(APP / "alerts.bicep", "noDetectCycle")["properties"]
    assert cycle["windowSize"] == "PT1H"
    criterion = cycle["criteria"]["allOf"][0]
    assert (criterion["timeAggregation"], criterion["operator"], criterion["threshold"]) == ("Count", "LessThan", 1)
    assert 'customDimensions.logger_name == "shared.services.audit"' in criterion["query"]
    assert 'message startswith "detect cycle"' in criterion["query"]


def test_the_cycle_alert_matches_what_the_audit_log_writes(caplog: pytest.LogCaptureFixture) -> None:
    from shared.services.audit import CycleRecord

    with caplog.at_level("INFO", logger="shared.services.audit"):
        CycleRecord(users_changed=0, messages_sent=0, full_sync=False, duration_ms=1.0).emit()
    (record,) = caplog.records
    query = resource(APP / "alerts.bicep", "noDetectCycle")["properties"]["criteria"]["allOf"][0]["query"]
    logger = re.search(r'logger_name == "([^"]+)"', query).group(1)  # type: ignore[union-attr]
    prefix = re.search(r'message startswith "([^"]+)"', query).group(1)  # type: ignore[union-attr]
    assert record.name == logger and record.getMessage().startswith(prefix)


def test_azd_parameters_name_every_required_parameter_and_nothing_else() -> None:
    declared = parse(INFRA / "main.bicep")["parameters"]
    given = set(json.loads((INFRA / "main.parameters.json").read_text())["parameters"])
    required = {name for name, p in declared.items() if p["default"] is None}
    assert sorted(required - given) == [] and sorted(given - set(declared)) == []
