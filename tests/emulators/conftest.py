"""Fixtures for the Graph emulator's wire tests: an emulator with small pages on a fresh tenant, and
an authenticated HTTP client. A module overrides `tenant` for its own seed."""
from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from emulators.graph import Tenant, run_graph_emulator
from emulators.graph.server import GraphEmulator


@pytest.fixture
def tenant() -> Tenant:
    return Tenant(seed=5)


@pytest.fixture
def graph(tenant: Tenant) -> Iterator[GraphEmulator]:
    with run_graph_emulator(tenant, page_size=2) as emulator:
        yield emulator


@pytest.fixture
def http(graph: GraphEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(headers={"Authorization": f"Bearer {graph.token}"}) as client:
        yield client
