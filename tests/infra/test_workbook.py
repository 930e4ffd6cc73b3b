"""The workbook's queries are the ones in infra/queries/, and they read only fields the app records."""
from __future__ import annotations

import json
import re

from shared.services.audit import CycleRecord, OperationRecord

from .bicep import INFRA, resource

QUERIES = INFRA / "queries"
PARAMETER_LINES = {'let entraId = "00000000-0000-0000-0000-000000000000";': 'let entraId = "{EntraId}";'}
# Dimensions the exporter adds itself (infra/README.md), and the kind marker every audit record carries.
EXPORTER_DIMENSIONS = {"logger_name", "audit_kind"}


def workbook_queries() -> dict[str, str]:
    workbook = json.loads((INFRA / "workbook.json").read_text())
    return {item["name"]: item["content"]["query"] for item in workbook["items"] if item["type"] == 3}


def test_every_query_file_is_in_the_workbook_verbatim_but_for_its_parameters():
    files = {p.stem: p.read_text() for p in QUERIES.glob("*.kql")}
    assert {"user-history", "failures-today", "queue-lag"} <= set(files)
    expected = {}
    for name, text in files.items():
        for line, parameter in PARAMETER_LINES.items():
            text = text.replace(line, parameter)
        expected[name] = text
    assert workbook_queries() == expected


def test_queries_read_only_recorded_audit_fields_and_emitted_metrics():
    recorded = set(OperationRecord.__dataclass_fields__) | set(CycleRecord.__dataclass_fields__) | EXPORTER_DIMENSIONS
    metrics_source = (INFRA.parent / "shared" / "services" / "metrics.py").read_text()
    for path in QUERIES.glob("*.kql"):
        text = path.read_text()
        assert set(re.findall(r"customDimensions\.(\w+)", text)) <= recorded, path.name
        for metric in re.findall(r'\bname == "([\w.]+)"', text):
            assert f'"{metric}"' in metrics_source, f"{path.name}: no metric {metric}"


def test_the_workbook_shows_the_app_insights_data():
    workbook = resource(INFRA / "app" / "workbook.bicep", "workbook")
    assert workbook["kind"] == "shared"
    assert workbook["properties"]["category"] == "workbook"
