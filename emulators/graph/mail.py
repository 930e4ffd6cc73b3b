"""sendMail request bodies. Graph matches parameter names and enum values case-insensitively, and
msgraph-sdk sends the action's parameters in PascalCase (`Message`, `SaveToSentItems`), so keys are
folded to lower case before reading."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class SentMail:
    sender_id: str
    subject: str
    body: str
    content_type: str  # "text" or "html"
    to: tuple[str, ...]
    cc: tuple[str, ...] = ()
    save_to_sent_items: bool = True


def parse_send_mail(sender_id: str, raw: bytes) -> SentMail:
    """Read a sendMail JSON body; ValueError says what is wrong with it."""
    try:
        data = _fold(json.loads(raw))
    except (UnicodeDecodeError, ValueError):
        raise ValueError("The request body is not valid JSON.") from None
    message = data.get("message") if isinstance(data, dict) else None
    if not isinstance(message, dict):
        raise ValueError("The 'message' parameter is missing.")
    to = _addresses(message.get("torecipients"))
    if not to:
        raise ValueError("At least one recipient is required, but none were found.")
    body = message.get("body") or {}
    content_type = str(body.get("contenttype", "text")).lower()
    if content_type not in ("text", "html"):
        raise ValueError(f"Invalid body contentType '{body.get('contenttype')}'.")
    save = data.get("savetosentitems", True)
    if not isinstance(save, bool):
        raise ValueError("saveToSentItems must be a boolean.")
    return SentMail(
        sender_id=sender_id,
        subject=str(message.get("subject") or ""),
        body=str(body.get("content") or ""),
        content_type=content_type,
        to=to,
        cc=_addresses(message.get("ccrecipients")),
        save_to_sent_items=save,
    )


def _fold(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key).lower(): _fold(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_fold(item) for item in value]
    return value


def _addresses(recipients: Any) -> tuple[str, ...]:
    if recipients is None:
        return ()
    if not isinstance(recipients, list):
        raise ValueError("Recipients must be a list.")
    addresses = []
    for recipient in recipients:
        address = (recipient.get("emailaddress") or {}).get("address") if isinstance(recipient, dict) else None
        if not isinstance(address, str) or "@" not in address:
            raise ValueError("Each recipient needs an emailAddress with an address.")
        addresses.append(address)
    return tuple(addresses)
