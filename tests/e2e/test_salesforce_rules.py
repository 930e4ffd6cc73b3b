"""Salesforce's User rules before the call, and licence parking, end to end on the local stack: a mapping
file that takes LanguageLocaleKey from preferredLanguage, Entra's language tags arriving as picklist
values, a user without mail failing with no Salesforce write, and licence exhaustion parking users."""
from __future__ import annotations

import contextlib
import logging
from functools import partial
from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest_asyncio

from cli.demo import run_cycle as demo_cycle
from cli.local_stack import QUEUE, LocalStack, app_settings, local_stack
from cli.provisioning_log import ProvisioningLog
from tests.functions.new_hires import hire, upn_of

run_cycle = partial(demo_cycle, idle_seconds=0.4)
DEFAULT = Path(__file__).resolve().parents[2] / "config" / "mapping.default.toml"
MAPPING = DEFAULT.read_text(encoding="utf-8").replace(
    '[fields.LanguageLocaleKey]\ntype = "Constant"\nvalue = "en_US"\n',
    '[fields.LanguageLocaleKey]\ntype = "Direct"\nsource = "preferredLanguage"\ndefault = "en_US"\n',
)


@pytest_asyncio.fixture(scope="module")
async def stack(tmp_path_factory) -> AsyncIterator[LocalStack]:
    assert MAPPING != DEFAULT.read_text(encoding="utf-8")
    path = tmp_path_factory.mktemp("mapping") / "mapping.toml"
    path.write_text(MAPPING, encoding="utf-8")
    with local_stack(users=40, retry_base_seconds=0.2) as running:
        async with app_settings(running, {"MAPPING_FILE": str(path)}):
            await run_cycle(running)
            yield running


def sf_user(stack: LocalStack, user_id: str) -> dict:
    [user] = [u for u in stack.org.users() if u["Username"].lower() == upn_of(stack, user_id).lower()]
    return user


def no_licence_left(stack: LocalStack) -> None:
    used, _ = stack.org.license_usage("Salesforce")
    stack.org.set_license_pool("Salesforce", used)


@contextlib.contextmanager
def audit_records() -> Iterator[list[dict]]:
    with ProvisioningLog() as plog:
        yield plog.records


def dead_letters(stack: LocalStack) -> int:
    return len(stack.servicebus.messages_seen(QUEUE, dead_letter=True))


async def test_language_tags_arrive_as_salesforce_picklist_values(stack: LocalStack, caplog):
    german = hire(stack, "Jürgen", "Weber", "Chatter Free User", preferredLanguage="de-DE")
    brazilian = hire(stack, "Ana", "Souza", "Chatter Free User", preferredLanguage="pt-BR")
    arabic = hire(stack, "Layla", "Haddad", "Chatter Free User", preferredLanguage="ar-SA")  # in neither picklist
    with caplog.at_level(logging.INFO, logger="shared.services.provision"):
        cycle = await run_cycle(stack)
    assert cycle.summary.outcome["created"] == 3 and not cycle.summary.failures
    # the fallback is logged with the object id and the field names, never the value
    assert f"entra={arabic}: LocaleSidKey, LanguageLocaleKey not in the restricted picklist" in caplog.text
    assert "ar-SA" not in caplog.text and "ar_SA" not in caplog.text
    assert {k: sf_user(stack, german)[k] for k in ("LocaleSidKey", "LanguageLocaleKey")} == {
        "LocaleSidKey": "de_DE", "LanguageLocaleKey": "de"}
    assert {k: sf_user(stack, brazilian)[k] for k in ("LocaleSidKey", "LanguageLocaleKey")} == {
        "LocaleSidKey": "pt_BR", "LanguageLocaleKey": "pt_BR"}
    assert {k: sf_user(stack, arabic)[k] for k in ("LocaleSidKey", "LanguageLocaleKey")} == {
        "LocaleSidKey": "en_US", "LanguageLocaleKey": "en_US"}  # the mapping's defaults
    again = await run_cycle(stack)  # converted values are what was applied: nothing to do next time
    assert again.salesforce_writes == 0


async def test_user_without_mail_fails_before_the_call_naming_email(stack: LocalStack):
    from shared.bootstrap import current_container

    mailless = hire(stack, "Noor", "Mailless", "Chatter Free User", mail=None)
    writes_before, mails_before = stack.org.calls.writes, len(stack.graph.outbox)
    cycle = await run_cycle(stack)
    assert stack.org.calls.writes == writes_before and cycle.salesforce_writes == 0  # no call for this user
    assert cycle.summary.failures == {"REQUIRED_FIELD_MISSING": 1} and cycle.dead_lettered == 1
    assert not [u for u in stack.org.users() if u["Username"].lower() == upn_of(stack, mailless).lower()]
    [mail] = stack.graph.outbox[mails_before:]
    assert "SalesforceRequiredFieldMissing" in mail.body and "Required fields are missing: [Email]" in mail.body
    [planned] = await current_container().provisioner.reconcile([mailless], apply=False)  # dry-run says why too
    assert planned.error is not None and planned.error.fields == ("Email",)


async def test_licence_exhaustion_parks_the_user_instead_of_dead_lettering(stack: LocalStack):
    no_licence_left(stack)
    newcomer = hire(stack, "Priya", "Raman", "Standard User")
    scheduled, dead, mails = stack.servicebus.scheduled_count(QUEUE), dead_letters(stack), len(stack.graph.outbox)
    with audit_records() as records:
        cycle = await run_cycle(stack)
    assert stack.servicebus.scheduled_count(QUEUE) == scheduled + 1  # retried in LICENSE_RETRY_SECONDS (6 h)
    assert stack.servicebus.scheduled_count(QUEUE, within_seconds=3600) == 0
    assert dead_letters(stack) == dead and len(stack.graph.outbox) == mails and not cycle.summary.failures
    [parked] = [r for r in records if r.get("kind") == "operation" and r["entra_id"] == newcomer]
    assert (parked["action"], parked["status"], parked["error_code"]) == ("create", "retrying", "LICENSE_LIMIT_EXCEEDED")


async def test_parked_user_is_created_once_a_licence_frees_up(stack: LocalStack):
    no_licence_left(stack)
    newcomer = hire(stack, "Mateo", "Silva", "Standard User")

    def free_a_licence(_: int) -> None:  # after the first attempt was refused
        used, total = stack.org.license_usage("Salesforce")
        stack.org.set_license_pool("Salesforce", max(total, used + 1))

    async with app_settings(stack, {"LICENSE_RETRY_SECONDS": "0.5", "RETRY_MAX_ATTEMPTS": "3"}):
        with audit_records() as records:
            cycle = await demo_cycle(stack, free_a_licence, idle_seconds=0.4)
    outcomes = [(r["status"], r["error_code"]) for r in records if r.get("kind") == "operation" and r["entra_id"] == newcomer]
    assert outcomes == [("retrying", "LICENSE_LIMIT_EXCEEDED"), ("success", None)]
    assert sf_user(stack, newcomer)["IsActive"] is True and cycle.dead_lettered == 0


async def test_licence_still_missing_when_attempts_run_out_is_dead_lettered_once(stack: LocalStack):
    no_licence_left(stack)
    newcomer = hire(stack, "Kofi", "Mensah", "Standard User")
    mails = len(stack.graph.outbox)
    async with app_settings(stack, {"LICENSE_RETRY_SECONDS": "0.2", "RETRY_MAX_ATTEMPTS": "1"}):
        with audit_records() as records:
            cycle = await run_cycle(stack)
    outcomes = [r["status"] for r in records if r.get("kind") == "operation" and r["entra_id"] == newcomer]
    assert outcomes == ["retrying", "failure"]
    assert cycle.summary.failures == {"LICENSE_LIMIT_EXCEEDED": 1} and cycle.dead_lettered == 1
    [mail] = stack.graph.outbox[mails:]
    assert "SalesforceLicenseLimitExceeded" in mail.body and "still refused after 2 attempts" in mail.body
