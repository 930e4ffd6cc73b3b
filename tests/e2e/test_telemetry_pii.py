"""No personal data and no secret in logs or telemetry: the demo's cycles, provision on demand and the
change-notification webhook run in a process of their own (tests/e2e/pii_canary.py) with canary
secrets configured (Salesforce password, security token, JWT private key, consumer secret, access
token, Graph client secret and token, webhook clientState, Service Bus key; the key and the consumer
secret also log in to the emulated org through simple-salesforce) and canary people in the
tenant (names, display names, UPNs, mails, phone numbers, job titles, all mapped to Salesforce), and
Application Insights configured as deployed (shared.telemetry), its ingestion endpoint a loopback sink.

Searched: every log record of every logger at DEBUG (a superset of what the deployed level, app
loggers at any level and others from Information, forwards), every span with its attributes and
events, every OpenTelemetry log record, every metric data point, and every batch the exporters sent.
Canaries are searched as substrings (they are distinctive); the rest of the tenant's UPNs, mails and
names as whole words."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.pii_canary import CANARY_PEOPLE

ROOT = Path(__file__).resolve().parents[2]
USERS = 60  # the smallest tenant the demo's day of changes can be drawn from is a little above 40


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("canary") / "captured.json"
    done = subprocess.run([sys.executable, "-m", "tests.e2e.pii_canary", str(out), "--users", str(USERS)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(out.read_text(encoding="utf-8"))


def canary_leaks(texts: list[tuple[str, str]], forbidden: dict[str, str]) -> list[str]:
    return sorted({f"{where}: {what} ({value!r})" for where, text in texts
                   for value, what in forbidden.items() if value in text})


def word_leaks(texts: list[tuple[str, str]], forbidden: dict[str, str]) -> list[str]:
    pattern = re.compile("|".join(rf"(?<![\w.@%-]){re.escape(v)}(?![\w@%-])"
                                  for v in sorted(forbidden, key=len, reverse=True)))
    return sorted({f"{where}: {forbidden[m.group(0)]} ({m.group(0)!r})"
                   for where, text in texts for m in pattern.finditer(text)})


def log_texts(run: dict[str, Any]) -> list[tuple[str, str]]:
    """Every log record, and the refused login's error (what the app would record as the reason)."""
    texts = [(f"log {r['logger']}:{r['level']}", r["text"]) for r in run["logs"]]
    return texts + [("refused login error", run["figures"]["logins"]["refused"])]


def telemetry_texts(run: dict[str, Any]) -> list[tuple[str, str]]:
    texts = [(t["where"], t["text"]) for t in run["spans"] + run["otel_logs"]]
    texts += [(f"metric {p['name']}", repr(p["attributes"])) for p in run["metrics"]]
    texts += [("exported batch", body) for body in run["exported"]]
    return texts


def test_the_run_did_real_work_with_the_canaries_in_it(run):
    figures = run["figures"]
    assert figures["created"] > 10 and figures["deactivated"] >= 1 and figures["emails"] >= 1
    assert {"DUPLICATE_USERNAME", "REQUIRED_FIELD_MISSING", "STRING_TOO_LONG"} <= set(figures["failures"])
    assert figures["on_demand_status"] == 200 and figures["webhook_status"] == [202, 202]
    # The JWT key and the consumer secret did log in (and a wrong secret was refused).
    logins = figures["logins"]
    assert logins["jwt"] == logins["client_credentials"] == "ok" and "invalid" in logins["refused"].lower()
    # Canary people reached Salesforce with their phone numbers, the others failed with their data in hand.
    assert list(run["canary_in_salesforce"].values()) == [True] * 3 + [False] * (CANARY_PEOPLE - 3)
    assert run["canary_phone_in_salesforce"]
    # Application Insights was configured by the app's own code, and every channel carried something.
    assert run["telemetry_configured"]
    assert min(len(run[k]) for k in ("logs", "spans", "otel_logs", "metrics", "exported")) > 0
    # DEBUG reached third-party loggers (the HTTP and AMQP clients).
    assert {"httpcore", "azure"} <= {r["logger"].split(".")[0] for r in run["logs"] if r["level"] == 10}
    # The searches would find a leak, of the key's body too.
    assert sum(what == "secret SALESFORCE_PRIVATE_KEY" for what in run["forbidden"].values()) >= 10
    upn = next(v for v, what in run["forbidden"].items() if what.startswith("userPrincipalName"))
    assert canary_leaks([("probe", f"GET /query?q=...{upn}...")], run["forbidden"])
    assert word_leaks([("probe", "hello alice.smith@contoso.com")], {"alice.smith@contoso.com": "upn"})


def test_no_log_record_at_any_level_carries_a_canary_secret_or_canary_person(run):
    texts = log_texts(run)
    assert len(texts) > USERS
    assert canary_leaks(texts, run["forbidden"]) == []


def test_no_log_record_at_any_level_names_anyone_in_the_tenant(run):
    assert word_leaks(log_texts(run), run["tenant_personal_data"]) == []


def test_no_span_otel_log_metric_or_exported_batch_carries_a_canary(run):
    assert canary_leaks(telemetry_texts(run), run["forbidden"]) == []


def test_no_span_otel_log_metric_or_exported_batch_names_anyone_in_the_tenant(run):
    assert word_leaks(telemetry_texts(run), run["tenant_personal_data"]) == []


def test_the_custom_metrics_describe_the_cycles(run):
    points: dict[str, list[dict[str, Any]]] = {}
    for point in run["metrics"]:
        points.setdefault(point["name"], []).append(point)
    figures = run["figures"]
    created = sum(p["value"] for p in points["provisioning.operations"]
                  if p["attributes"]["action"] == "create" and p["attributes"]["status"] == "success")
    assert created >= figures["created"]
    failures = {p["attributes"]["error_code"] for p in points["provisioning.operations"]
                if p["attributes"]["status"] == "failure"}
    assert "REQUIRED_FIELD_MISSING" in failures
    assert sum(p["count"] for p in points["provisioning.detect_cycle.duration"]) == figures["detect_cycles"]
    assert sum(p["value"] for p in points["provisioning.detect_cycle.messages_sent"]) > 0
    lag = points["provisioning.queue_lag"]
    assert sum(p["count"] for p in lag) >= figures["users"] and all(p["min"] >= 0 for p in lag)
    assert sum(p["value"] for p in points["provisioning.graph.calls"]) >= figures["graph_calls"] > 0
    salesforce = {p["attributes"]["kind"]: p["value"] for p in points["provisioning.salesforce.calls"]}
    assert salesforce["query"] > 0 and salesforce["write"] > 0
