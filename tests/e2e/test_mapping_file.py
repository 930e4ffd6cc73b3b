"""A mapping file changes what the pipeline does: scoping filters and a second matching attribute."""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import AsyncIterator

import pytest_asyncio

from cli.demo import run_cycle as demo_cycle
from cli.local_stack import LocalStack, app_settings, local_stack

run_cycle = partial(demo_cycle, idle_seconds=0.4)
DEFAULT = Path(__file__).resolve().parents[2] / "config" / "mapping.default.toml"
MAPPING = DEFAULT.read_text(encoding="utf-8").replace("[fields.Email]\n", "[fields.Email]\nmatching_priority = 2\n") + '''
[[scoping.filter]]
clause = [{ attribute = "givenName", operator = "IS NOT NULL" }]
'''


@pytest_asyncio.fixture(scope="module")
async def stack(tmp_path_factory) -> AsyncIterator[LocalStack]:
    path = tmp_path_factory.mktemp("mapping") / "mapping.toml"
    path.write_text(MAPPING, encoding="utf-8")
    with local_stack(users=80) as running:
        async with app_settings(running, {"MAPPING_FILE": str(path), "DEACTIVATION_THRESHOLD_PERCENT": "0"}):
            yield running


def assigned_with_given_name(stack: LocalStack, has_given_name: bool) -> list[dict]:
    users = [stack.tenant.find_user(u) for u in stack.demo.expected_roles]
    return [u for u in users if u and u.get("accountEnabled", True) and bool(u.get("givenName")) == has_given_name
            and u.get("mail") and u["id"] not in stack.demo.two_role_ids]


async def test_scoping_filter_and_email_matching(stack: LocalStack):
    nameless = assigned_with_given_name(stack, False)
    named = assigned_with_given_name(stack, True)
    assert nameless and named
    # an existing Salesforce user with the Entra user's mail but another Username: matched by Email
    adopted = named[0]
    existing_id = stack.org.create_user({
        "Username": "legacy.account@contoso-old.com", "LastName": "Legacy", "Email": adopted["mail"], "Alias": "legacy",
        "TimeZoneSidKey": "America/Los_Angeles", "LocaleSidKey": "en_US", "EmailEncodingKey": "ISO-8859-1",
        "LanguageLocaleKey": "en_US", "ProfileId": stack.org.profile_id("Chatter Free User"),
    })
    await run_cycle(stack)
    usernames = {u["Username"].lower() for u in stack.org.users()}
    for user in nameless:  # outside the only scoping filter: never created
        assert user["userPrincipalName"].lower() not in usernames
    matched = stack.org.get_user(existing_id)
    assert matched["Username"].lower() == adopted["userPrincipalName"].lower()  # adopted and brought in line
    assert "legacy.account@contoso-old.com" not in usernames
