"""The app's own alerts to the admins (held deactivations, quarantine): sent from NOTIFY_SENDER to
NOTIFY_RECIPIENTS, by one worker at a time (a lease in the state store), never raising on a mail failure:
the caller keeps the alert owed and tries again later."""
from __future__ import annotations

import logging
import uuid
from typing import Awaitable, Callable, Sequence, TypeVar

from ..core.ports import Mailer, StateStore

log = logging.getLogger(__name__)

T = TypeVar("T")
LEASE_SECONDS = 60.0


class AdminMail:
    def __init__(self, state: StateStore, mailer: Mailer, sender: str, recipients: Sequence[str]) -> None:
        self._state = state
        self._mailer = mailer
        self._sender = sender
        self._recipients = tuple(recipients)

    async def exclusively(self, lease: str, action: Callable[[], Awaitable[T]]) -> T | None:
        """Run action under the lease; None, without running it, while another worker holds it."""
        owner = uuid.uuid4().hex
        if not self._state.claim(lease, owner, LEASE_SECONDS):
            return None
        try:
            return await action()
        finally:
            self._state.release(lease, owner)

    async def send(self, subject: str, body: str, *, what: str) -> bool:
        """True once the mail service accepted it; False (logged, never raised) otherwise."""
        try:
            await self._mailer.send_mail(self._sender, self._recipients, subject, body)
        except Exception as exc:  # any mail failure: the caller keeps the alert owed
            log.error("could not send the %s email: %s", what, type(exc).__name__)
            return False
        log.info("%s email accepted", what)
        return True
