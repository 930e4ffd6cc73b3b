"""Helpers for the Salesforce adapter tests: a valid User record, and the adapter's call counts
agreeing with what the emulated org served."""
from __future__ import annotations

from typing import Any

from emulators.salesforce import EmulatedOrg
from shared.adapters.salesforce import SalesforceRestOrg


def record(org: EmulatedOrg, username: str, profile: str = "Standard User", **overrides: Any) -> dict[str, Any]:
    fields = {
        "Username": username,
        "LastName": "Tester",
        "Email": username,
        "Alias": username[:8],
        "TimeZoneSidKey": "Europe/Berlin",
        "LocaleSidKey": "de_DE",
        "EmailEncodingKey": "UTF-8",
        "LanguageLocaleKey": "de",
        "ProfileId": org.profile_id(profile),
    }
    fields.update(overrides)
    return {k: v for k, v in fields.items() if v is not None}


def assert_counts_match(adapter: SalesforceRestOrg, org: EmulatedOrg) -> None:
    assert (adapter.calls.total, adapter.calls.writes) == (org.calls.total, org.calls.writes)
    assert adapter.calls.queries == org.calls.by_kind["query"] + org.calls.by_kind["query_more"]
