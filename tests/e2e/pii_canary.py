"""The canary run behind test_telemetry_pii.py, in a process of its own as the Functions worker is:
the demo (cli.demo's cycles) on the local stack, with recognisable fake secrets configured and
canary people in the tenant, and Application Insights configured the way the deployed app does it
(shared.telemetry → the Azure Monitor distro), its ingestion endpoint a loopback sink. Everything that
could leave the process is written to one JSON file for the test to search:

- every log record of every logger at DEBUG (the emulators' own loggers aside: they stand in for
  Graph, Salesforce and Service Bus, whose logs are not ours),
- every span (name, attributes, events, status), OpenTelemetry log record and metric data point, read
  with in-memory exporters added to the distro's own providers,
- every request body the distro's exporters POSTed to the ingestion sink.

    python -m tests.e2e.pii_canary OUT.json [--users N]
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import gzip
import io
import json
import logging
import os
import threading
import traceback
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import trustme

# Secrets, by the setting that holds them. The Salesforce and Graph tokens are also the emulators'
# accepted tokens, so they are really sent; the consumer secret and the JWT private key (a real key,
# made per run: it must sign) are used by the login flows exercised against the emulator's OAuth
# endpoint; the password, security token and Graph client secret are configured only.
SECRETS = {
    "SALESFORCE_PASSWORD": "CanaryPw-Leak7f3kSalesforce",
    "SALESFORCE_SECURITY_TOKEN": "CanarySecTokQm9Zt4",
    "SALESFORCE_CONSUMER_SECRET": "CanaryConsumerSecret4Vb8Xw",
    "SALESFORCE_ACCESS_TOKEN": "00DCANARY!AccessTokenZt6Rq",
    "AZURE_CLIENT_SECRET": "CanaryGraphClientSecret~2QpV",
    "GRAPH_DEV_TOKEN": "CanaryGraphBearerToken5Wm",
    "GRAPH_CLIENT_STATE": "CanaryClientState-Hx81Webhook",
    "SERVICEBUS_SHARED_ACCESS_KEY": "CanarySasKey3RfY",
}
SALESFORCE_USERNAME = "canary.integration.qx@contoso.com"
JWT_APP, CC_APP, MY_DOMAIN = "canary-jwt-app", "canary-cc-app", "canaryorg.my"
CANARY_PEOPLE = 6
ROLE = "Chatter Free User"  # plenty of licences: the canaries are created, not parked
EXCLUDED_LOGGERS = ("emulators", "aiohttp.access", "aiohttp.server", "aiohttp.web", "proton", "tests.")
# A deployment's mapping may carry more personal data than the defaults: phones, title, display name.
EXTRA_MAPPING = '''
[fields.MobilePhone]
type = "Direct"
source = "mobilePhone"

[fields.Phone]
type = "Expression"
expression = 'Join(", ", [businessPhones])'

[fields.Title]
type = "Direct"
source = "jobTitle"

[fields.Division]
type = "Direct"
source = "displayName"
'''


def canary_person(i: int) -> dict[str, Any]:
    given, surname = f"Kanarie{i}Qx", f"Vogelcanary{i}Zq"
    return {
        "userPrincipalName": f"canary.person{i}.qx@contoso.com",
        "mail": f"canary.mailbox{i}.qx@contoso.com",
        "displayName": f"Canaryshown{i} Vq",
        "givenName": given,
        "surname": surname,
        "mailNickname": f"canaryperson{i}",
        "mobilePhone": f"+1 555 017{i} 4482",
        "businessPhones": [f"+44 20 7946 08{i}3"],
        "jobTitle": f"Canary Title {i}Jx",
        "employeeId": f"CAN{i}X",
        "preferredLanguage": "en-US",
        "accountEnabled": True,
    }


def personal_forms(value: str) -> set[str]:
    return {value, value.lower(), quote(value), quote_plus(value), quote(value.lower()), json.dumps(value)[1:-1]}


def forbidden_values(tenant: Any, user_ids: list[str], private_key: str) -> dict[str, str]:
    """Each value no record may contain → what it is: the canary secrets and the canary people's
    personal data (in the encodings a URL or JSON would give them)."""
    values: dict[str, str] = {}
    for name, secret in SECRETS.items():
        for form in {secret, quote(secret), quote_plus(secret), base64.b64encode(secret.encode()).decode()}:
            values[form] = f"secret {name}"
    for line in private_key.splitlines():
        if len(line) >= 40 and not line.startswith("-----"):  # any line of the key's body
            values[line] = "secret SALESFORCE_PRIVATE_KEY"
    for form in personal_forms(SALESFORCE_USERNAME):
        values[form] = "SALESFORCE_USERNAME"
    for user_id in user_ids:
        user = tenant.find_user(user_id) or {}
        for attribute in ("userPrincipalName", "mail", "displayName", "givenName", "surname", "mobilePhone",
                          "jobTitle"):
            if user.get(attribute):
                for form in personal_forms(user[attribute]):
                    values[form] = f"{attribute} of canary {user_id}"
        if user.get("userPrincipalName"):  # the default CommunityNickname is the UPN's local part
            values[user["userPrincipalName"].split("@")[0]] = f"userPrincipalName (local part) of canary {user_id}"
        for phone in user.get("businessPhones") or ():
            values[phone] = f"businessPhones of canary {user_id}"
        # A phone number may be printed without its spaces.
        if user.get("mobilePhone"):
            values[user["mobilePhone"].replace(" ", "")] = f"mobilePhone of canary {user_id}"
    return values


def tenant_personal_data(tenant: Any) -> dict[str, str]:
    """Every other person's UPN, mail, given name and surname (names of 3+ characters: "Al" is an
    ordinary substring of log text); the test searches for these as whole words."""
    values: dict[str, str] = {}
    for user_id in tenant.user_ids:
        user = tenant.find_user(user_id) or {}
        for attribute in ("userPrincipalName", "mail"):
            if user.get(attribute):
                for form in personal_forms(user[attribute]):
                    values[form] = f"{attribute} of {user_id}"
        for attribute in ("givenName", "surname"):
            if user.get(attribute) and len(user[attribute]) >= 3:
                values[user[attribute]] = f"{attribute} of {user_id}"
    return values


class CaptureEverything(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(EXCLUDED_LOGGERS):
            return
        parts = [record.getMessage()]
        parts += [f"{k}={v!r}" for k, v in vars(record).items() if k not in ("msg", "args", "exc_info")]
        if record.exc_info:
            parts.append("".join(traceback.format_exception(*record.exc_info)))
        self.records.append({"logger": record.name, "level": record.levelno, "text": "\n".join(parts)})


class IngestionSink(ThreadingHTTPServer):
    """Application Insights' ingestion (and live metrics) endpoint on loopback: accepts every batch."""

    def __init__(self) -> None:
        self.bodies: list[str] = []
        super().__init__(("127.0.0.1", 0), _SinkHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


class _SinkHandler(BaseHTTPRequestHandler):
    server: IngestionSink

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.bodies.append(f"{self.path}\n{body.decode('utf-8', 'replace')}")
        items = body.count(b"\n") + 1
        reply = json.dumps({"itemsReceived": items, "itemsAccepted": items, "errors": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


class InMemoryTelemetry:
    """In-memory exporters handed to the distro next to its own (span and log processors, a metric
    reader), by wrapping configure_azure_monitor so shared.telemetry's call is the one that runs."""

    def __init__(self) -> None:
        from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        self.spans = InMemorySpanExporter()
        self.logs = InMemoryLogRecordExporter()
        self.metrics = InMemoryMetricReader()
        self._processors = {"span_processors": [SimpleSpanProcessor(self.spans)],
                            "log_record_processors": [SimpleLogRecordProcessor(self.logs)],
                            "metric_readers": [self.metrics]}
        self.configured = False

    def install(self) -> None:
        import azure.monitor.opentelemetry as distro

        original = distro.configure_azure_monitor

        def configure(**kwargs: Any) -> None:
            self.configured = True
            original(**kwargs, **self._processors)

        distro.configure_azure_monitor = configure

    def flush(self) -> None:
        from opentelemetry import _logs, metrics, trace

        for provider in (trace.get_tracer_provider(), _logs.get_logger_provider(), metrics.get_meter_provider()):
            provider.force_flush()  # type: ignore[attr-defined]

    def span_texts(self) -> list[dict[str, str]]:
        texts = []
        for span in self.spans.get_finished_spans():
            parts = [span.name, repr(dict(span.attributes or {})), span.status.description or ""]
            parts += [f"{e.name} {dict(e.attributes or {})!r}" for e in span.events]
            texts.append({"where": f"span {span.name}", "text": "\n".join(parts)})
        return texts

    def log_texts(self) -> list[dict[str, str]]:
        texts = []
        for data in self.logs.get_finished_logs():
            record = data.log_record
            texts.append({"where": f"otel log {data.instrumentation_scope.name if data.instrumentation_scope else ''}",
                          "text": f"{record.body!r}\n{dict(record.attributes or {})!r}"})
        return texts

    def metric_points(self) -> list[dict[str, Any]]:
        data = self.metrics.get_metrics_data()
        points = []
        for resource_metrics in data.resource_metrics if data else ():
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        points.append({"name": metric.name, "attributes": dict(point.attributes or {}),
                                       **{k: getattr(point, k) for k in ("value", "count", "sum", "min")
                                          if hasattr(point, k)}})
        return points


def plant_canaries(stack: Any, signing: Any) -> list[str]:
    """Canary people (three ordinary, one whose username is taken in another org, one without a mail,
    one with an over-long surname) and canary secrets in the settings and the emulators."""
    people = []
    for i in range(CANARY_PEOPLE):
        attributes = canary_person(i)
        if i == 4:
            del attributes["mail"]
        if i == 5:
            attributes["surname"] = "Vogelcanary5Zq" + "Lang" * 25
        user_id = stack.tenant.add_user(**attributes)
        stack.tenant.assign(stack.demo.service_principal_id, user_id, stack.demo.app_role_ids[ROLE])
        people.append(user_id)
    stack.org.registry.reserve(canary_person(3)["userPrincipalName"])
    stack.org.create_user({"Username": SALESFORCE_USERNAME, "LastName": "Integration", "Email": SALESFORCE_USERNAME,
                           "Alias": "integ", "TimeZoneSidKey": "GMT", "LocaleSidKey": "en_US",
                           "EmailEncodingKey": "UTF-8", "LanguageLocaleKey": "en_US",
                           "ProfileId": stack.org.profile_id("System Administrator")})
    stack.org.register_connected_app(JWT_APP, certificate_pem=signing.cert_chain_pems[0].bytes().decode())
    stack.org.register_connected_app(CC_APP, consumer_secret=SECRETS["SALESFORCE_CONSUMER_SECRET"])
    stack.org.dev_token = SECRETS["SALESFORCE_ACCESS_TOKEN"]
    stack.graph.token = SECRETS["GRAPH_DEV_TOKEN"]
    mapping = stack.workdir / "mapping.toml"
    default = Path(__file__).resolve().parents[2] / "config" / "mapping.default.toml"
    mapping.write_text(default.read_text(encoding="utf-8") + EXTRA_MAPPING, encoding="utf-8")
    connection = stack.env["ServiceBusConnection"].replace("SharedAccessKey=x", "SharedAccessKey="
                                                             + SECRETS["SERVICEBUS_SHARED_ACCESS_KEY"])
    stack.env.update({name: SECRETS[name] for name in SECRETS if name != "SERVICEBUS_SHARED_ACCESS_KEY"})
    stack.env.update({
        "ServiceBusConnection": connection,
        "SALESFORCE_USERNAME": SALESFORCE_USERNAME,
        "SALESFORCE_PRIVATE_KEY": signing.private_key_pem.bytes().decode(),
        "SALESFORCE_CONSUMER_KEY": "canary-consumer-key",
        "MAPPING_FILE": str(mapping),
    })
    return people


def telemetry_environment(sink: IngestionSink) -> dict[str, str]:
    """Application Insights pointed at the sink, with nothing reaching beyond loopback (no statsbeat,
    control plane or cloud resource detection) and every span kept."""
    return {
        "APPLICATIONINSIGHTS_CONNECTION_STRING":
            f"InstrumentationKey=00000000-0000-0000-0000-00000000ca1a;IngestionEndpoint={sink.url};LiveEndpoint={sink.url}",
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
        "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
        "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "otel",
        "OTEL_TRACES_SAMPLER": "always_on",
    }


async def exercise_logins(stack: Any) -> dict[str, str]:
    """The JWT bearer and client credentials logins with the canary key and secret, through
    simple-salesforce's own code (its login hosts routed to the emulator), each followed by an API
    call; and a refused login, whose error text is kept as the app would record it."""
    from shared.adapters.salesforce import SalesforceRestOrg
    from shared.adapters.salesforce_client import client_credentials_client, jwt_bearer_client
    from shared.core.errors import ProvisioningError
    from emulators.salesforce.login_routing import login_session

    session = login_session(stack.salesforce, "login.salesforce.com", f"{MY_DOMAIN}.salesforce.com")
    key, secret = os.environ["SALESFORCE_PRIVATE_KEY"], os.environ["SALESFORCE_CONSUMER_SECRET"]
    logins = {
        "jwt": partial(jwt_bearer_client, JWT_APP, SALESFORCE_USERNAME, key, "login", session=session),
        "client_credentials": partial(client_credentials_client, CC_APP, secret, MY_DOMAIN, session=session),
        "refused": partial(client_credentials_client, CC_APP, secret[::-1], MY_DOMAIN, session=session),
    }
    outcomes = {}
    for name, connect in logins.items():
        try:
            await SalesforceRestOrg(connect).profile_ids()
            outcomes[name] = "ok"
        except ProvisioningError as exc:
            outcomes[name] = str(exc)
    return outcomes


async def exercise(stack: Any, people: list[str], idle_seconds: float) -> dict[str, Any]:
    """The demo's cycles, then the canary people changing, provision on demand and webhooks."""
    import azure.functions as func
    from rich.console import Console

    from cli.demo import DemoPrinter, demo_cycles, run_cycle
    from emulators.functions_host import registered_functions

    import function_app

    first, second, third = await demo_cycles(stack, DemoPrinter(Console(file=io.StringIO())), idle_seconds)
    stack.tenant.update_user(people[0], givenName="Kanarie0Renamed", mobilePhone="+1 555 0170 9911")
    stack.tenant.update_user(people[1], accountEnabled=False)
    functions = registered_functions(function_app.app)
    on_demand = await functions["provision_on_demand"](
        func.HttpRequest("POST", f"https://x/api/provision/{people[2]}", body=b"", route_params={"entra_id": people[2]}))
    webhook = []
    for client_state in (SECRETS["GRAPH_CLIENT_STATE"], "not-the-client-state"):
        body = {"value": [{"clientState": client_state, "changeType": "updated", "resource": f"Users/{people[0]}",
                           "resourceData": {"id": people[0]}, "subscriptionId": "00000000-0000-0000-0000-0000000000a1",
                           "tenantId": "00000000-0000-0000-0000-0000000000b2"}]}
        response = await functions["graph_notifications"](
            func.HttpRequest("POST", "https://x/api/graph/notifications", body=json.dumps(body).encode()))
        webhook.append(response.status_code)
    fourth = await run_cycle(stack, idle_seconds=idle_seconds)
    logins = await exercise_logins(stack)
    return {
        "logins": logins,
        "created": first.summary.outcome["created"] + third.summary.outcome["created"],
        "updated": third.summary.outcome["updated"] + fourth.summary.outcome["updated"],
        "deactivated": third.summary.outcome["deactivated"] + fourth.summary.outcome["deactivated"],
        "failures": sorted({*first.summary.failures, *third.summary.failures, *fourth.summary.failures}),
        "second_cycle_writes": second.salesforce_writes,
        "emails": sum(c.emails for c in (first, second, third, fourth)),
        "detect_cycles": 4,
        "users": sum(c.summary.users for c in (first, second, third, fourth)),
        "graph_calls": sum(c.graph_calls for c in (first, second, third, fourth)),
        "on_demand_status": on_demand.status_code,
        "webhook_status": webhook,
    }


def run(out: Path, users: int, idle_seconds: float = 0.4) -> None:
    root = logging.getLogger()
    capture = CaptureEverything()
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    telemetry = InMemoryTelemetry()
    telemetry.install()

    from cli.local_stack import environment, local_stack

    sink = IngestionSink()
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    signing = trustme.CA().issue_cert("integration.contoso.com", key_type=trustme.KeyType.RSA)
    with local_stack(users=users, retry_base_seconds=0.2) as stack:
        people = plant_canaries(stack, signing)
        with environment({**stack.env, **telemetry_environment(sink)}):
            try:
                figures = asyncio.run(_exercise_and_close(stack, people, idle_seconds))
            finally:
                telemetry.flush()
        sf_people = {u: _salesforce_user(stack, u) for u in people}
        result = {
            "figures": figures,
            "telemetry_configured": telemetry.configured,
            "canary_people": people,
            "canary_in_salesforce": {u: bool(r) for u, r in sf_people.items()},
            "canary_phone_in_salesforce": any(r and r.get("MobilePhone") for r in sf_people.values()),
            "forbidden": forbidden_values(stack.tenant, people, signing.private_key_pem.bytes().decode()),
            "tenant_personal_data": tenant_personal_data(stack.tenant),
            "logs": capture.records,
            "spans": telemetry.span_texts(),
            "otel_logs": telemetry.log_texts(),
            "metrics": telemetry.metric_points(),
            "exported": sink.bodies,
        }
    root.removeHandler(capture)  # the sink keeps serving until the process exits: exporters flush at exit
    out.write_text(json.dumps(result, default=repr), encoding="utf-8")


async def _exercise_and_close(stack: Any, people: list[str], idle_seconds: float) -> dict[str, Any]:
    from shared.bootstrap import current_container

    try:
        return await exercise(stack, people, idle_seconds)
    finally:
        await current_container().aclose()


def _salesforce_user(stack: Any, user_id: str) -> dict[str, Any] | None:
    upn = (stack.tenant.find_user(user_id) or {}).get("userPrincipalName", "").lower()
    return next((u for u in stack.org.users() if u["Username"].lower() == upn), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--users", type=int, default=60)
    args = parser.parse_args(argv)
    run(args.out, args.users)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
