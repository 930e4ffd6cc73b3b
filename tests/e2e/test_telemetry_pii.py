"""No personal data and no secret in telemetry: a full pipeline cycle on the local stack (timer → queue →
provision → dead-letter → email) and a provision-on-demand call, with every log record of every
logger and every metric data point captured, then searched for the tenant's UPNs, emails, given names
and surnames and for the stack's secrets.

What is checked is what can reach Application Insights: every record of this app's own loggers, at any
level, and records of every other logger at Information and above (host.json's default log level,
which is what the Functions host forwards from the worker). Metrics are read with an in-memory
OpenTelemetry reader on the global MeterProvider, the one the Azure Monitor distro would export from."""
from __future__ import annotations

import logging
import re
import traceback
from typing import Any, AsyncIterator, Iterator
from urllib.parse import quote, quote_plus

import azure.functions as func
import pytest
import pytest_asyncio
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from cli.demo import run_cycle
from cli.local_stack import LocalStack, environment, local_stack

USERS = 60
APP_LOGGERS = ("shared", "functions", "function_app", "cli")
SECRET_SETTINGS = ("GRAPH_DEV_TOKEN", "SALESFORCE_ACCESS_TOKEN", "GRAPH_CLIENT_STATE")
MIN_NAME_LENGTH = 3  # shorter given names ("Al", "Bo") are ordinary substrings of log text


class CaptureEverything(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def metric_reader() -> InMemoryMetricReader:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics.set_meter_provider(provider)  # the global provider can be set once per process
    assert metrics.get_meter_provider() is provider, "another MeterProvider was installed earlier in this process"
    return reader


@pytest.fixture(scope="module")
def captured() -> Iterator[CaptureEverything]:
    handler = CaptureEverything()
    root = logging.getLogger()
    saved = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(saved)


@pytest_asyncio.fixture(scope="module")
async def stack(metric_reader, captured) -> AsyncIterator[LocalStack]:
    from shared.bootstrap import current_container

    with local_stack(users=USERS, retry_base_seconds=0.2) as running, environment(running.env):
        try:
            import function_app
            from emulators.functions_host import registered_functions

            running.figures = await run_cycle(running, idle_seconds=0.4)  # type: ignore[attr-defined]
            on_demand = registered_functions(function_app.app)["provision_on_demand"]
            for user_id in sorted(running.demo.expected_roles)[:3]:
                await on_demand(func.HttpRequest("POST", f"https://x/api/provision/{user_id}", body=b"",
                                                 route_params={"entra_id": user_id}))
            yield running
        finally:
            await current_container().aclose()


def personal_data(stack: LocalStack) -> dict[str, str]:
    """Each value a record must not contain → what it is."""
    values: dict[str, str] = {}
    for user_id in stack.tenant.user_ids:
        user = stack.tenant.find_user(user_id) or {}
        for attribute in ("userPrincipalName", "mail"):
            value = user.get(attribute)
            if value:
                for form in (value, value.lower(), quote(value), quote_plus(value), quote(value.lower())):
                    values[form] = f"{attribute} of {user_id}"
        for attribute in ("givenName", "surname"):
            value = user.get(attribute)
            if value and len(value) >= MIN_NAME_LENGTH:
                values[value] = f"{attribute} of {user_id}"
    return values


def secrets(stack: LocalStack) -> dict[str, str]:
    return {stack.env[name]: name for name in SECRET_SETTINGS}


def exported(record: logging.LogRecord) -> bool:
    return record.name.startswith(APP_LOGGERS) or record.levelno >= logging.INFO


def record_text(record: logging.LogRecord) -> str:
    """Everything an exporter could send: the message, every extra attribute, the exception."""
    parts = [record.getMessage()]
    parts += [f"{k}={v!r}" for k, v in vars(record).items() if k not in ("msg", "args", "exc_info")]
    if record.exc_info:
        parts.append("".join(traceback.format_exception(*record.exc_info)))
    return "\n".join(parts)


def leaks(texts: list[tuple[str, str]], forbidden: dict[str, str]) -> list[str]:
    """(where, text) pairs → one line per forbidden value found, as a whole word."""
    pattern = re.compile("|".join(rf"(?<![\w.@%-]){re.escape(v)}(?![\w@%-])" for v in sorted(forbidden, key=len, reverse=True)))
    found = []
    for where, text in texts:
        for match in pattern.finditer(text):
            found.append(f"{where}: {forbidden[match.group(0)]} ({match.group(0)!r})")
    return sorted(set(found))


def log_texts(captured: CaptureEverything) -> list[tuple[str, str]]:
    return [(f"{r.name}:{r.levelname}", record_text(r)) for r in captured.records if exported(r)]


def metric_texts(reader: InMemoryMetricReader) -> list[tuple[str, str]]:
    data = reader.get_metrics_data()
    texts = []
    for resource_metrics in data.resource_metrics if data else ():
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    texts.append((metric.name, repr(dict(point.attributes or {}))))
    return texts


def test_the_cycle_did_real_work_with_personal_data_in_it(stack, captured):
    figures = stack.figures
    assert figures.summary.outcome["created"] > 10
    assert figures.emails >= 1  # the failure digest went out: the dead-letter path ran too
    assert len(personal_data(stack)) > 2 * USERS
    # the search would find a UPN if one were logged
    assert leaks([("probe", f"user {stack.tenant.find_user(stack.tenant.user_ids[0])['userPrincipalName']}")],
                 personal_data(stack))


def test_no_log_record_contains_personal_data_or_secrets(stack, captured):
    texts = log_texts(captured)
    assert len(texts) > USERS  # one audit record per user at least
    assert leaks(texts, {**personal_data(stack), **secrets(stack)}) == []


def test_no_metric_carries_personal_data_or_secrets(stack, metric_reader):
    texts = metric_texts(metric_reader)
    assert texts
    assert leaks(texts, {**personal_data(stack), **secrets(stack)}) == []


def _points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    return {m.name: list(m.data.data_points) for rm in data.resource_metrics for s in rm.scope_metrics for m in s.metrics}


def test_the_custom_metrics_describe_the_cycle(stack, metric_reader):
    points = _points(metric_reader)
    created = sum(p.value for p in points["provisioning.operations"]
                  if p.attributes["action"] == "create" and p.attributes["status"] == "success")
    assert created >= stack.figures.summary.outcome["created"]
    failures = {p.attributes["error_code"] for p in points["provisioning.operations"] if p.attributes["status"] == "failure"}
    assert "REQUIRED_FIELD_MISSING" in failures
    [cycle] = points["provisioning.detect_cycle.duration"]
    assert cycle.count == 1 and cycle.sum > 0
    assert sum(p.value for p in points["provisioning.detect_cycle.messages_sent"]) > 0
    lag = points["provisioning.queue_lag"]
    assert sum(p.count for p in lag) >= stack.figures.summary.users and all(p.min >= 0 for p in lag)
    assert sum(p.value for p in points["provisioning.graph.calls"]) >= stack.figures.graph_calls > 0
    salesforce = {p.attributes["kind"]: p.value for p in points["provisioning.salesforce.calls"]}
    assert salesforce["query"] > 0 and salesforce["write"] > 0
