"""The binding JSON the worker hands the host agrees with host.json and the settings template."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from emulators.functions_host import binding_settings

ROOT = Path(__file__).resolve().parents[2]
SETTING_REFERENCE = re.compile(r"%([^%]+)%")


@pytest.fixture(scope="module")
def bindings() -> dict[str, list[dict[str, Any]]]:
    import function_app

    return binding_settings(function_app.app)


@pytest.fixture(scope="module")
def template_values() -> dict[str, str]:
    return json.loads((ROOT / "local.settings.json.example").read_text())["Values"]


def trigger(bindings: dict[str, list[dict[str, Any]]], name: str) -> dict[str, Any]:
    [binding] = [b for b in bindings[name] if b["direction"] == "IN"]
    return binding


def test_the_app_registers_its_functions(bindings):
    assert set(bindings) == {"detect_changes", "provision_user", "notify_failures", "graph_notifications",
                             "provision_on_demand", "manage_subscriptions", "graph_lifecycle"}


def test_every_setting_a_binding_names_is_in_the_settings_template(bindings, template_values):
    referenced = {
        (function, setting)
        for function, items in bindings.items()
        for binding in items
        for value in binding.values() if isinstance(value, str)
        for setting in SETTING_REFERENCE.findall(value)
    }
    assert {s for _, s in referenced} >= {"DETECT_SCHEDULE", "SERVICEBUS_QUEUE_NAME"}  # the check has teeth
    missing = sorted((f, s) for f, s in referenced if s not in template_values)
    assert missing == []


def test_every_connection_is_configured_in_the_settings_template(bindings, template_values):
    connections = {b["connection"] for items in bindings.values() for b in items if "connection" in b}
    assert connections == {"ServiceBusConnection"}
    for name in connections:
        # a connection string under the name itself, or an identity-based connection (name__...)
        assert name in template_values or f"{name}__fullyQualifiedNamespace" in template_values


def test_host_json_parses_and_configures_the_service_bus_extension():
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    service_bus = host["extensions"]["serviceBus"]
    assert service_bus["autoCompleteMessages"] is True  # the functions settle by returning or raising
    assert service_bus["maxMessageBatchSize"] >= 1  # the dead-letter trigger receives batches
    assert service_bus["maxConcurrentCalls"] >= 1


def test_the_dead_letter_trigger_reads_the_main_queues_dead_letter_queue_in_batches(bindings):
    provision, notify = trigger(bindings, "provision_user"), trigger(bindings, "notify_failures")
    assert provision["type"] == notify["type"] == "serviceBusTrigger"
    assert notify["queueName"] == provision["queueName"] + "/$deadletterqueue"
    assert notify["cardinality"].upper() == "MANY"
    assert provision.get("cardinality", "ONE").upper() == "ONE"


def test_the_webhook_is_a_post_route_behind_a_function_key(bindings):
    http = trigger(bindings, "graph_notifications")
    assert http["type"] == "httpTrigger"
    assert http["methods"] == ["POST"]
    assert http["authLevel"] == "FUNCTION"
    assert http["route"] == "graph/notifications"
    assert [b["type"] for b in bindings["graph_notifications"] if b["direction"] == "OUT"] == ["http"]


def test_the_timer_schedule_comes_from_settings_and_does_not_run_on_startup(bindings):
    timer = trigger(bindings, "detect_changes")
    assert timer["type"] == "timerTrigger"
    assert timer["schedule"] == "%DETECT_SCHEDULE%"
    assert timer["runOnStartup"] is False
