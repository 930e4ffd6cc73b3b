"""Turn dead-lettered messages into one digest email per batch, with what failed and what to do.

A batch of dead letters is completed only once the mail service accepted the digest: if sendMail
fails, the handler raises and every message of the batch stays in the dead-letter queue. A user's
failure is emailed once: when an escrow retry fails again with the same code, its dead letter is
completed without an email (shared/services/escrow.py)."""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

from ..core.guidance import guidance_for
from ..core.messages import failure_key, is_object_id
from ..core.models import FailureRecord
from ..core.ports import Mailer, StateStore
from ..core.untrusted_json import parse_untrusted_json
from .escrow import Escrow

log = logging.getLogger(__name__)

MAX_LISTED = 1000  # beyond this a digest lists counts only; the rest stays visible in the logs


@dataclass(frozen=True, slots=True)
class DeadLetter:
    message_id: str
    body: bytes
    dead_letter_reason: str | None
    dead_letter_description: str | None
    delivery_count: int | None = None
    enqueued_at: datetime | None = None


class FailureNotifier:
    def __init__(
        self, state: StateStore, mailer: Mailer, sender: str, recipients: Sequence[str], escrow: Escrow | None = None
    ) -> None:
        self._state = state
        self._escrow = escrow
        self._mailer = mailer
        self._sender = sender
        self._recipients = tuple(recipients)

    async def notify(self, letters: Sequence[DeadLetter]) -> list[FailureRecord]:
        if not letters:
            return []
        failures = [self._failure_for(letter) for letter in letters]
        news = [f for f in failures if self._escrow is None or self._escrow.is_news(f)]
        if news:
            subject, body = compose_digest(news)
            await self._mailer.send_mail(self._sender, self._recipients, subject, body)
            log.info("failure digest accepted for %d dead-lettered messages", len(news))
            if self._escrow is not None:
                self._escrow.reported(news)
        if len(news) < len(failures):
            log.info("%d dead-lettered messages repeat failures already reported; not emailed again",
                     len(failures) - len(news))
        for f in failures:
            self._state.delete_failure(f.message_id)  # a replay of the message is then processed afresh
        return news

    def _failure_for(self, letter: DeadLetter) -> FailureRecord:
        """The recorded original failure; otherwise what the dead-letter properties say."""
        key = failure_key(letter.message_id, letter.body)
        recorded = self._state.get_failure(key)
        if recorded is not None:
            return recorded
        return FailureRecord(
            message_id=key,
            entra_id=_entra_id_of(letter.body),
            action="reconcile",
            code=letter.dead_letter_reason or "DeadLettered",
            description=letter.dead_letter_description or "no description",
            occurred_at=letter.enqueued_at.isoformat() if letter.enqueued_at else "",
        )


def _entra_id_of(body: bytes) -> str:
    try:
        value = parse_untrusted_json(body).get("entraId", "")
    except (ValueError, AttributeError):
        return ""
    # Only an object id: the body may come from any sender, and this goes into the email.
    return value.lower() if is_object_id(value) else ""


def compose_digest(failures: Sequence[FailureRecord]) -> tuple[str, str]:
    by_code: dict[str, list[FailureRecord]] = defaultdict(list)
    for f in failures:
        by_code[f.code].append(f)
    codes = ", ".join(f"{code} ×{len(items)}" for code, items in sorted(by_code.items(), key=lambda kv: -len(kv[1])))
    subject = f"Salesforce provisioning: {len(failures)} failure{'s' if len(failures) != 1 else ''} ({codes})"[:250]
    lines = [
        f"{len(failures)} provisioning operation(s) from Microsoft Entra ID to Salesforce failed and need attention.",
        "Each user below was not changed in Salesforce by the failed operation.",
        "",
    ]
    listed = 0
    for code, items in sorted(by_code.items(), key=lambda kv: -len(kv[1])):
        g = guidance_for(code)
        lines += [f"== {code} ({g.connector_code}): {len(items)} user(s)", f"What to do: {g.advice}", ""]
        for f in items:
            if listed >= MAX_LISTED:
                break
            listed += 1
            user = f.entra_id or "unknown user"
            lines.append(f"- user {user}: {f.action} failed: {f.description}")
            lines.append(f"  message {f.message_id}, at {f.occurred_at or 'unknown time'}")
            if f.entra_id:
                lines.append(f"  https://entra.microsoft.com/#view/Microsoft_AAD_UsersAndTenants/UserProfileMenuBlade/~/overview/userId/{f.entra_id}")
        lines.append("")
    if listed < len(failures):
        lines.append(f"... and {len(failures) - listed} more; query the provisioning log in Application Insights.")
    return subject, "\n".join(lines)
