"""The settings the code reads, the bindings name, local.settings.json.example lists and infra/ deploys
are one set. A setting added to shared/settings.py or a binding but not to the Bicep (or the other way
round) fails here, not at the first start in Azure."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydantic import AliasChoices, SecretStr, TypeAdapter

import function_app
from emulators.functions_host import binding_settings
from shared.settings import Settings, load_settings

from .bicep import INFRA, app_settings_by_mode, parse

ROOT = Path(__file__).resolve().parents[2]

# Settings the code reads only on a developer's machine; Azure gets none of them.
LOCAL_ONLY = {
    "GRAPH_DEV_TOKEN",  # static token for the Graph emulator; refused for a non-loopback GRAPH_BASE_URL
    "SALESFORCE_CA_BUNDLE",  # trusts the Salesforce emulator's throwaway CA
    "SALESFORCE_ACCESS_TOKEN",  # access_token mode is for development
    "SALESFORCE_INSTANCE_URL",  # read in access_token mode only
    "STATE_SQLITE_PATH",  # SQLite state store
    "STATE_TABLE_CONNECTION_STRING",  # Azurite; Azure uses STATE_TABLE_ENDPOINT with the identity
    "ServiceBusConnection",  # connection string for the local Service Bus; Azure: ServiceBusConnection__*
}
# Host settings of local.settings.json.example that Flex Consumption gets another way.
LOCAL_HOST_ONLY = {
    "FUNCTIONS_WORKER_RUNTIME",  # functionAppConfig.runtime
    "AzureWebJobsStorage",  # AzureWebJobsStorage__* with the managed identity
    "AzureWebJobsFeatureFlags",  # worker indexing is the default for the v2 model in Azure
}
# The host's own settings in Azure: identity-based storage and Entra-authenticated telemetry.
AZURE_HOST_SETTINGS = {
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__queueServiceUri",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
}


def setting_names() -> dict[str, str]:
    """Settings field → the environment name it is read from (the first alias, as the docs use it)."""
    names = {}
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names[field_name] = alias.choices[0] if isinstance(alias, AliasChoices) else field_name
    return names


def bindings() -> tuple[set[str], set[str]]:
    """(`%NAME%` settings, connection names) of every registered function's bindings."""
    expressions, connections = set(), set()
    for function_bindings in binding_settings(function_app.app).values():
        for binding in function_bindings:
            for value in binding.values():
                if isinstance(value, str):
                    expressions.update(re.findall(r"%([^%]+)%", value))
            if "connection" in binding:
                connections.add(binding["connection"])
    return expressions, connections


def example_settings() -> dict[str, str]:
    return json.loads((ROOT / "local.settings.json.example").read_text())["Values"]


def test_code_bindings_example_and_bicep_agree() -> None:
    code = set(setting_names().values())
    assert LOCAL_ONLY <= code, f"LOCAL_ONLY names settings the code no longer reads: {sorted(LOCAL_ONLY - code)}"
    expressions, connections = bindings()
    assert expressions and connections, "the bindings should name settings (%DETECT_SCHEDULE%, ...) and a connection"
    identity_connections = {f"{c}__{part}" for c in connections for part in ("fullyQualifiedNamespace", "credential", "clientId")}
    deployed_by_code = (code - LOCAL_ONLY) | expressions | {f"{c}__fullyQualifiedNamespace" for c in connections}
    expected_in_azure = deployed_by_code | identity_connections | AZURE_HOST_SETTINGS

    bicep = app_settings_by_mode()
    in_any_mode = set().union(*bicep.values())
    assert sorted(in_any_mode - expected_in_azure) == [], "infra sets settings nothing reads"
    assert sorted(expected_in_azure - in_any_mode) == [], "infra misses settings the code or bindings read"

    example = example_settings()
    mode = example["SALESFORCE_AUTH_MODE"]
    known = deployed_by_code | LOCAL_ONLY | LOCAL_HOST_ONLY | {"APPLICATIONINSIGHTS_CONNECTION_STRING"}
    assert sorted(set(example) - known) == [], "local.settings.json.example lists settings nothing reads"
    missing = set(bicep[mode]) - AZURE_HOST_SETTINGS - identity_connections - set(example)
    missing |= expressions - set(example)
    assert sorted(missing) == [], f"local.settings.json.example misses settings Azure gets in {mode} mode"


@pytest.mark.parametrize("mode", sorted(app_settings_by_mode()))
def test_each_salesforce_mode_deploys_valid_settings(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What Azure hands the worker in each mode passes the code's own validation (values: the literal
    where the Bicep has one, a placeholder for parameters and resolved Key Vault references)."""
    for name in setting_names().values():
        monkeypatch.delenv(name, raising=False)
    for name, value in app_settings_by_mode()[mode].items():
        monkeypatch.setenv(name, mode if name == "SALESFORCE_AUTH_MODE" else value.literal or f"placeholder-{name.lower()}")
    settings = load_settings()
    assert settings.SALESFORCE_AUTH_MODE == mode


def test_literal_values_in_bicep_are_the_code_defaults() -> None:
    """A tuning value written into the Bicep must not quietly differ from the documented default."""
    fields = {env: Settings.model_fields[name] for name, env in setting_names().items()}
    for settings in app_settings_by_mode().values():
        for name, value in settings.items():
            if name in fields and value.literal is not None:
                field = fields[name]
                assert TypeAdapter(field.annotation).validate_python(value.literal) == field.default, name


def test_secrets_are_key_vault_references_and_nothing_else_is() -> None:
    names = setting_names()
    secret_settings = {names[n] for n, f in Settings.model_fields.items() if SecretStr in getattr(f.annotation, "__args__", ())}
    for mode, settings in app_settings_by_mode().items():
        for name, value in settings.items():
            assert value.is_key_vault_reference == (name in secret_settings), f"{name} ({mode})"
    assert "GRAPH_CLIENT_STATE" in secret_settings  # the check above saw the SecretStr fields


def test_identity_based_connections_use_the_user_assigned_identity() -> None:
    _, connections = bindings()
    for settings in app_settings_by_mode().values():
        for connection in connections | {"AzureWebJobsStorage"}:
            assert settings[f"{connection}__credential"].literal == "managedidentity"
            assert settings[f"{connection}__clientId"].parameter == "identityClientId"
        assert settings["AZURE_CLIENT_ID"].parameter == "identityClientId"
        assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"].raw == "ClientId=${identityClientId};Authorization=AAD"


def test_deployment_defaults_are_the_code_defaults() -> None:
    """A setting azd fills from a main.bicep parameter's default (DETECT_SCHEDULE aside, which the code
    does not default) gets the same value the code would use without it."""
    main = parse(INFRA / "main.bicep")
    passed = main["modules"]["functionApp"]["config"]["params"]
    fields = {env: Settings.model_fields[name] for name, env in setting_names().items()}
    checked = set()
    for settings in app_settings_by_mode().values():
        for name, value in settings.items():
            source = passed.get(value.parameter) if value.parameter else None
            if name in fields and isinstance(source, str) and source in main["parameters"]:
                default = main["parameters"][source]["default"]
                if default is not None and fields[name].default is not None:
                    assert default == fields[name].default, f"{name}: main.bicep {source} = {default!r}"
                    checked.add(name)
    assert {"GRAPH_BASE_URL", "SALESFORCE_AUTH_MODE", "SALESFORCE_DOMAIN", "PROFILE_PRIORITY"} <= checked
    # the queue name reaches the app through the Service Bus module's output
    assert main["parameters"]["serviceBusQueueName"]["default"] == Settings.model_fields["SERVICEBUS_QUEUE_NAME"].default
    assert main["parameters"]["detectSchedule"]["default"] == example_settings()["DETECT_SCHEDULE"]
