"""Fixtures for testing the functions as the host calls them: the app's registered functions, and one
local stack per module (Graph, Salesforce and Service Bus emulators + SQLite state) with its settings
applied as environment variables, the way the Functions host hands app settings to the worker."""
from __future__ import annotations

from typing import Any, AsyncIterator, Callable, Iterator

import pytest
import pytest_asyncio

from cli.local_stack import LocalStack, app_settings, local_stack
from emulators.functions_host import registered_functions
from shared.adapters.state_sqlite import SqliteStateStore

from .service_bus_io import QueueSession

USERS = 60  # the smallest demo tenant has 40; 60 keeps every population non-trivial and the stack fast


@pytest.fixture(scope="session")
def functions() -> dict[str, Callable[..., Any]]:
    import function_app  # importing the app is what the worker does when it indexes it

    return registered_functions(function_app.app)


def stack_fixture(**options: Any):
    """A module-scoped local stack; a module that needs other settings makes its own with options."""

    @pytest_asyncio.fixture(scope="module")
    async def stack() -> AsyncIterator[LocalStack]:
        with local_stack(users=USERS, **options) as running:
            async with app_settings(running):
                yield running

    return stack


stack = stack_fixture()


@pytest_asyncio.fixture(scope="module")
async def queue(stack: LocalStack) -> AsyncIterator[QueueSession]:
    """The real SDK on the stack's queue, for sending, receiving and settling in tests."""
    async with QueueSession(stack) as session:
        yield session


@pytest.fixture
def state(stack: LocalStack) -> Iterator[SqliteStateStore]:
    """The state store the functions use, opened separately, as another worker would see it."""
    with SqliteStateStore(stack.env["STATE_SQLITE_PATH"]) as store:
        yield store
