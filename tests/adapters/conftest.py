"""The emulated Salesforce org and the Salesforce adapter pointed at it, for the adapter tests (a module
that needs another org or login, like test_salesforce_login, defines its own fixtures)."""
from __future__ import annotations

from functools import partial
from typing import AsyncIterator

import pytest

from emulators.salesforce import EmulatedOrg, EmulatorHandle, UsernameRegistry, run_salesforce_emulator
from shared.adapters.salesforce import SalesforceRestOrg
from shared.adapters.salesforce_client import dev_token_client


@pytest.fixture
def registry() -> UsernameRegistry:
    return UsernameRegistry()


@pytest.fixture
def org(registry: UsernameRegistry) -> EmulatedOrg:
    org = EmulatedOrg(registry=registry, licenses={"Salesforce": 1000, "Chatter Free": 5000, "Platform": 1})
    org.add_profile("Platform User", "Platform")
    return org


@pytest.fixture
async def emulator(org: EmulatedOrg) -> AsyncIterator[EmulatorHandle]:
    with run_salesforce_emulator(org) as handle:
        yield handle


@pytest.fixture
def adapter(emulator: EmulatorHandle) -> SalesforceRestOrg:
    return SalesforceRestOrg(partial(dev_token_client, emulator.instance_url, emulator.token, emulator.ca_path), timeout=5)
