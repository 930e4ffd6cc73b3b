"""The whole pipeline end to end, through the real function handlers, the real SDKs and the emulators:
timer → Service Bus → provision → dead-letter → email. One local stack for the module; each test works
on its own users so the order of the tests does not matter."""
from __future__ import annotations

import asyncio
from typing import AsyncIterator

import pytest_asyncio

from functools import partial

from cli.demo import CycleFigures, run_cycle as demo_cycle
from cli.local_stack import LocalStack, app_settings, local_stack
from shared.core.mapping import MappingInput, default_salesforce_mapping
from shared.core.messages import ReconcileMessage
from shared.core.models import EntraUser

USERS = 120
run_cycle = partial(demo_cycle, idle_seconds=0.4)  # loopback queues settle in milliseconds


@pytest_asyncio.fixture(scope="module")
async def stack() -> AsyncIterator[LocalStack]:
    with local_stack(users=USERS, retry_base_seconds=0.2) as running:
        async with app_settings(running):
            running.first_cycle = await run_cycle(running)  # type: ignore[attr-defined]
            yield running


def alias_candidates(user: EntraUser) -> tuple[str, ...]:
    [alias] = [f for f in default_salesforce_mapping().unique_fields if f.target == "Alias"]
    return alias.unique_candidates(MappingInput(user, ()))  # type: ignore[misc]


def container():
    from shared.bootstrap import current_container

    return current_container()


def sf_user_for(stack: LocalStack, upn: str) -> list[dict]:
    return [u for u in stack.org.users() if u["Username"].lower() == upn.lower()]


_TAKEN: set[str] = set()  # users a test already changed


def active_profile_user(stack: LocalStack, *, direct_only: bool = False) -> tuple[str, str]:
    """An Entra user provisioned in the first cycle that no other test touched: (object id, UPN).
    direct_only: its roles all come from direct assignments (none through a group)."""
    for user_id in sorted(stack.demo.expected_roles):
        link = container().state.get_link(user_id)
        user = stack.tenant.find_user(user_id)
        if not (link and user and user.get("accountEnabled", True)) or user_id in _TAKEN:
            continue
        if direct_only and len(stack.tenant.assignments_of(user_id)) != len(stack.tenant.user_app_role_assignments(user_id)):
            continue
        _TAKEN.add(user_id)
        return user_id, user["userPrincipalName"]
    raise AssertionError("no provisioned user left for this test")


async def test_first_cycle_provisions_every_in_scope_user_and_reports_failures(stack: LocalStack):
    first: CycleFigures = stack.first_cycle  # type: ignore[attr-defined]
    org_users = {u["Username"].lower(): u for u in stack.org.users()}
    created = 0
    for user_id, roles in stack.demo.expected_roles.items():
        user = stack.tenant.find_user(user_id)
        link = container().state.get_link(user_id)
        in_scope = user.get("accountEnabled", True) and roles - {"00000000-0000-0000-0000-000000000000"}
        if not in_scope:
            assert link is None and user["userPrincipalName"].lower() not in org_users
            continue
        if link is not None:
            created += 1
            sf = stack.org.get_user(link.salesforce_id)
            assert sf["Username"].lower() == user["userPrincipalName"].lower()
            assert sf["IsActive"] is True
            assert sf["Alias"] in alias_candidates(EntraUser(user_id, user))
    assert created == first.summary.outcome["created"] > 0
    for field in ("Alias", "CommunityNickname"):  # SelectUniqueValue: no two Salesforce users share one
        values = [u[field].casefold() for u in stack.org.users()]
        assert len(values) == len(set(values)), field
    # every permanent failure reached the dead-letter queue and one digest email
    failures = first.summary.failures
    assert sum(failures.values()) == first.dead_lettered
    assert stack.servicebus.dead_letter_count("provision-users") == 0  # completed once the digest was accepted
    assert {"REQUIRED_FIELD_MISSING", "DUPLICATE_USERNAME"} <= set(failures)
    # licence exhaustion parks the user (retried hours later) instead of dead-lettering it
    assert "LICENSE_LIMIT_EXCEEDED" not in failures and first.summary.outcome["retrying"] > 0
    assert stack.servicebus.scheduled_count("provision-users") >= first.summary.outcome["retrying"]  # parked, hours away
    assert first.emails == 1
    mail = stack.graph.outbox[0]
    for connector_code in ("SalesforceRequiredFieldMissing", "SalesforceDuplicateUserName"):
        assert connector_code in mail.body
    assert "SalesforceLicenseLimitExceeded" not in mail.body and "unique across all" in mail.body


async def test_unchanged_tenant_makes_zero_salesforce_writes_even_on_full_reconcile(stack: LocalStack):
    writes_before = stack.org.calls.writes
    second = await run_cycle(stack)
    assert second.salesforce_calls == 0 and second.dead_lettered == 0
    linked = [u for u in stack.demo.expected_roles if container().state.get_link(u)]
    results = await container().provisioner.reconcile(linked)
    assert {r.operation.action for r in results} == {"noop"}
    assert stack.org.calls.writes == writes_before


async def test_attribute_change_updates_only_that_field(stack: LocalStack):
    user_id, upn = active_profile_user(stack)
    stack.tenant.update_user(user_id, surname="Ó'Connor-Ñúñez")
    cycle = await run_cycle(stack)
    [sf] = sf_user_for(stack, upn)
    assert sf["LastName"] == "Ó'Connor-Ñúñez"
    assert cycle.summary.outcome["updated"] == 1 and cycle.salesforce_writes == 1


async def test_unassignment_deactivates_and_reassignment_reactivates(stack: LocalStack):
    user_id, upn = active_profile_user(stack, direct_only=True)
    direct = stack.tenant.assignments_of(user_id)
    role_ids = [a.app_role_id for a in direct]
    for a in direct:
        stack.tenant.unassign(a.id)
    await run_cycle(stack)
    [sf] = sf_user_for(stack, upn)
    assert sf["IsActive"] is False  # deactivated, never deleted
    for role_id in role_ids:
        stack.tenant.assign(stack.demo.service_principal_id, user_id, role_id)
    cycle = await run_cycle(stack)
    [sf] = sf_user_for(stack, upn)
    assert sf["IsActive"] is True and cycle.summary.outcome["reactivated"] == 1


async def test_disable_and_delete_in_entra_deactivate(stack: LocalStack):
    disabled_id, disabled_upn = active_profile_user(stack)
    deleted_id, deleted_upn = active_profile_user(stack)
    stack.tenant.update_user(disabled_id, accountEnabled=False)
    stack.tenant.hard_delete_user(deleted_id)
    cycle = await run_cycle(stack)
    assert sf_user_for(stack, disabled_upn)[0]["IsActive"] is False
    assert sf_user_for(stack, deleted_upn)[0]["IsActive"] is False
    assert cycle.summary.outcome["deactivated"] == 2


async def test_duplicate_and_stale_messages_converge_on_current_state(stack: LocalStack):
    user_id, upn = active_profile_user(stack)
    stale = ReconcileMessage.new(user_id, "notification", "stale")  # observed before the change below
    stack.tenant.update_user(user_id, givenName="Renée")
    fresh = ReconcileMessage.new(user_id, "notification", "fresh")
    for message in (fresh, fresh, stale):  # a duplicate, then an out-of-order older one
        await container().queue.send([message])
    await run_cycle(stack)
    [sf] = sf_user_for(stack, upn)
    assert sf["FirstName"] == "Renée"
    assert stack.servicebus.duplicates_dropped("provision-users") >= 1


async def test_two_concurrent_messages_for_a_new_user_create_one_salesforce_user(stack: LocalStack):
    sp = stack.demo.service_principal_id
    upn = "concurrent.hire@contoso.com"
    user_id = stack.tenant.add_user(userPrincipalName=upn, mail=upn, givenName="Con", surname="Current",
                                    accountEnabled=True, displayName="Con Current")
    stack.tenant.assign(sp, user_id, stack.demo.app_role_ids["Chatter Free User"])
    messages = [ReconcileMessage.new(user_id, "notification", f"burst-{i}") for i in range(4)]
    provisioner = container().provisioner
    await asyncio.gather(*(provisioner.handle_message(m.to_json(), m.message_id) for m in messages))
    await run_cycle(stack)  # drains the retries the lease scheduled
    assert len(sf_user_for(stack, upn)) == 1


async def test_alias_and_nickname_are_unique_in_the_org_and_in_the_batch_at_one_extra_query(stack: LocalStack):
    org, sp = stack.org, stack.demo.service_principal_id
    org.create_user({  # made by hand in Salesforce: holds the first alias and one hire's nickname
        "Username": "kpark.by.hand@contoso.com", "LastName": "Park", "Email": "kpark.by.hand@contoso.com",
        "Alias": "KPark", "CommunityNickname": "kai.park", "TimeZoneSidKey": "Europe/Berlin", "LocaleSidKey": "de_DE",
        "EmailEncodingKey": "UTF-8", "LanguageLocaleKey": "de", "ProfileId": org.profile_id("Chatter Free User")})
    ids = []
    for given in ("Kai", "Kira", "Ken"):
        upn = f"{given}.Park@contoso.com"
        ids.append(stack.tenant.add_user(userPrincipalName=upn, mail=upn, givenName=given, surname="Park",
                                         accountEnabled=True, displayName=f"{given} Park"))
        stack.tenant.assign(sp, ids[-1], stack.demo.app_role_ids["Chatter Free User"])
    queries, writes = org.calls.by_kind.get("query", 0), org.calls.writes

    results = await container().provisioner.reconcile(ids)

    assert [(r.operation.action, r.error) for r in results] == [("create", None)] * 3
    created = [org.get_user(container().state.get_link(i).salesforce_id) for i in ids]
    assert [u["Alias"] for u in created] == ["kpark1", "kpark2", "kpark3"]  # KPark is taken, whatever its case
    assert [u["CommunityNickname"] for u in created] == [f"Kai.Park.{ids[0][:8]}", "Kira.Park", "Ken.Park"]
    # the candidates rode along in the matching query; the taken ones cost one query for the rest
    assert org.calls.by_kind["query"] - queries == 2 and org.calls.writes - writes == 1


async def test_expired_delta_token_triggers_a_full_resync_without_rewriting_anyone(stack: LocalStack):
    linked_before = {u for u in stack.demo.expected_roles if container().state.get_link(u)}
    stack.graph.delta.expire_tokens()
    cycle = await run_cycle(stack)
    assert cycle.summary.users >= len(linked_before)  # every assigned user was looked at again
    # users already in sync are not written; only earlier failures may be retried (a licence may be free now)
    assert cycle.summary.outcome["updated"] == cycle.summary.outcome["deactivated"] == 0
    assert cycle.summary.outcome["reactivated"] == 0
    assert cycle.salesforce_writes <= len(stack.demo.expected_roles) - len(linked_before)


async def test_transient_failures_retry_with_backoff_then_dead_letter_with_the_last_error(stack: LocalStack):
    user_id, upn = active_profile_user(stack)
    stack.tenant.update_user(user_id, surname="Retried")
    mails_before = len(stack.graph.outbox)
    stack.org.faults.fail_rate("lock", 1.0)  # every Salesforce call: UNABLE_TO_LOCK_ROW
    try:
        cycle = await run_cycle(stack)
    finally:
        stack.org.faults.clear()
    assert cycle.summary.transient_retries == int(stack.env.get("RETRY_MAX_ATTEMPTS", 6))
    assert cycle.summary.failures == {"RetriesExhausted": 1}
    [mail] = stack.graph.outbox[mails_before:]
    assert user_id in mail.body and "UNABLE_TO_LOCK_ROW" in mail.body and "every retry" in mail.body
    assert sf_user_for(stack, upn)[0]["LastName"] != "Retried"  # nothing half-applied
    await run_cycle(stack)  # nothing new is detected: the change waits for the next message or resync
    results = await container().provisioner.reconcile([user_id])
    assert results[0].operation.action == "update" and sf_user_for(stack, upn)[0]["LastName"] == "Retried"
