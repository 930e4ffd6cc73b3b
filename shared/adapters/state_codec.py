"""What the SQLite and Table state stores share: how ids, role sets, times, leases and records are
represented, and the input checks both apply, so the two stores agree by construction."""
from __future__ import annotations

import json
from dataclasses import asdict, fields
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Mapping

from shared.core.escrow import EscrowEntry
from shared.core.models import FailureRecord, UserLink
from shared.core.quarantine import QUARANTINE_REASONS, QuarantineStatus
from shared.core.safety import HOLD_STATUSES, HeldDeactivation

Clock = Callable[[], datetime]

LINK_FIELDS = tuple(f.name for f in fields(UserLink))
FAILURE_FIELDS = tuple(f.name for f in fields(FailureRecord))
HELD_FIELDS = tuple(f.name for f in fields(HeldDeactivation))
ESCROW_FIELDS = tuple(f.name for f in fields(EscrowEntry))
QUARANTINE_FIELDS = tuple(f.name for f in fields(QuarantineStatus))
WINDOW_BUCKET_SECONDS = 60  # deactivations are counted per minute: the window is exact to a minute
MAX_DESCRIPTION_CHARS = 8000
TRUNCATED = " [truncated]"


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def to_iso(moment: datetime) -> str:
    """UTC ISO 8601 with a fixed width, so stored times also sort as text."""
    if moment.tzinfo is None:
        raise ValueError("state times must be timezone-aware (UTC)")
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def object_key(entra_id: str) -> str:
    """Entra object ids are GUIDs that callers may spell in either case; the stores keep them lower-case."""
    return required_text("Entra object id", entra_id).lower()


def required_text(what: str, value: object) -> str:
    if not isinstance(value, str) or not value or value != value.strip():
        raise ValueError(f"{what} must be a non-empty string without surrounding whitespace, got {value!r}")
    return value


def intent_rows(intents: Mapping[str, str]) -> dict[str, str]:
    """Create intents checked and keyed as stored: lower-case Entra id → Username."""
    return {object_key(entra_id): required_text("Username", username) for entra_id, username in intents.items()}


def cursor_update(name: str, value: str | None) -> tuple[str, str | None]:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"cursor value must be a string or None, got {type(value).__name__}")
    return required_text("cursor name", name), value


def encode_roles(role_ids: frozenset[str]) -> str:
    """A role set as one compact string: sorted ids separated by single spaces ("" for no roles)."""
    if isinstance(role_ids, str) or not isinstance(role_ids, (set, frozenset)):
        raise TypeError(f"app role ids must be a set of strings, got {type(role_ids).__name__}")
    for role_id in role_ids:
        if not isinstance(role_id, str) or not role_id or any(ch.isspace() for ch in role_id):
            raise ValueError(f"app role id must be a non-empty string without whitespace, got {role_id!r}")
    return " ".join(sorted(role_ids))


def decode_roles(text: str) -> frozenset[str]:
    return frozenset(text.split(" ")) if text else frozenset()


def assignment_changes(
    upserts: Mapping[str, frozenset[str]], removals: Iterable[str]
) -> tuple[dict[str, str], list[str]]:
    """Validate and normalise a snapshot change: (user key → encoded roles, user keys to remove).
    A user may appear once; appearing in both upserts and removals is a caller bug, not a choice to make."""
    encoded: dict[str, str] = {}
    for user_id, role_ids in upserts.items():
        key = object_key(user_id)
        if key in encoded:
            raise ValueError(f"user {key} appears twice in the upserts (ids differ only in case)")
        encoded[key] = encode_roles(role_ids)
    removed = sorted({object_key(user_id) for user_id in removals})
    both = encoded.keys() & set(removed)
    if both:
        raise ValueError(f"users both upserted and removed: {sorted(both)[:5]}")
    return encoded, removed


def lease_expiry(now: datetime, ttl_seconds: float) -> str:
    if not ttl_seconds > 0:
        raise ValueError(f"lease ttl must be positive, got {ttl_seconds!r}")
    return to_iso(now + timedelta(seconds=ttl_seconds))


def lease_is_free(holder: str, expires_at: str, owner: str, now: datetime) -> bool:
    """An existing lease can be taken by owner if owner already holds it or it has expired."""
    return holder == owner or datetime.fromisoformat(expires_at) <= now


def link_values(link: UserLink) -> dict[str, Any]:
    values = asdict(link)
    values["entra_id"] = object_key(link.entra_id)
    required_text("Salesforce user id", link.salesforce_id)
    # JSON text (key → assignment id): both stores keep plain strings
    values["permission_sets"] = json.dumps(dict(link.permission_sets), sort_keys=True) if link.permission_sets else ""
    return values


def salesforce_key(salesforce_id: str) -> str:
    """The case-sensitive 15-character form of a Salesforce id: the 18-character form only adds a checksum."""
    return required_text("Salesforce user id", salesforce_id)[:15]


def link_from(values: Mapping[str, Any]) -> UserLink:
    """Absent or null values take the model's defaults (Table Storage does not store nulls)."""
    found = {name: values[name] for name in LINK_FIELDS if values.get(name) is not None}
    found["permission_sets"] = tuple(sorted(json.loads(found.get("permission_sets") or "{}").items()))
    return UserLink(**found)


def failure_values(failure: FailureRecord) -> dict[str, Any]:
    """A description is for a person reading an email; an oversized one (a vendor echoing a whole
    payload) is cut rather than letting Table Storage's 32K-character cap refuse the whole record."""
    values = asdict(failure)
    if len(failure.description) > MAX_DESCRIPTION_CHARS:
        values["description"] = failure.description[: MAX_DESCRIPTION_CHARS - len(TRUNCATED)] + TRUNCATED
    # A failure may concern a message too broken to name a user, so the id may be empty here.
    values["entra_id"] = failure.entra_id.lower()
    required_text("message id", failure.message_id)
    return values


def failure_from(values: Mapping[str, Any]) -> FailureRecord:
    return FailureRecord(**{name: values[name] for name in FAILURE_FIELDS})


def held_values(held: HeldDeactivation) -> dict[str, Any]:
    values = asdict(held)
    values["entra_id"] = object_key(held.entra_id)
    required_text("Salesforce user id", held.salesforce_id)
    required_text("held time", held.held_at)
    if held.status not in HOLD_STATUSES:
        raise ValueError(f"hold status must be one of {sorted(HOLD_STATUSES)}, got {held.status!r}")
    return values


def held_from(values: Mapping[str, Any]) -> HeldDeactivation:
    return HeldDeactivation(**{name: values[name] for name in HELD_FIELDS if values.get(name) is not None})


def window_grant(
    counts_json: str | None, now: datetime, wanted: int, limit: int, window_seconds: float
) -> tuple[int, str]:
    """Of `wanted` deactivations, how many fit under `limit` given those counted in the last
    window_seconds; and the counts (JSON: bucket start → count) with the granted ones added now and
    buckets older than the window dropped."""
    if wanted < 0 or limit < 0 or not window_seconds > 0:
        raise ValueError(f"need wanted >= 0, limit >= 0 and a positive window, got {wanted}, {limit}, {window_seconds}")
    counts = _window_buckets(counts_json, now, window_seconds)
    granted = max(0, min(wanted, limit - sum(counts.values())))
    if granted:
        bucket = _current_bucket(now)
        counts[bucket] = counts.get(bucket, 0) + granted
    return granted, json.dumps(counts, sort_keys=True)


def _window_buckets(counts_json: str | None, now: datetime, window_seconds: float) -> dict[str, Any]:
    """The per-minute buckets (bucket start → value) of the last window_seconds."""
    if not window_seconds > 0:
        raise ValueError(f"need a positive window, got {window_seconds}")
    oldest = to_iso(now - timedelta(seconds=window_seconds))
    return {bucket: n for bucket, n in json.loads(counts_json or "{}").items() if bucket > oldest}


def _current_bucket(now: datetime) -> str:
    epoch = int(now.timestamp()) // WINDOW_BUCKET_SECONDS * WINDOW_BUCKET_SECONDS
    return to_iso(datetime.fromtimestamp(epoch, timezone.utc))


def outcome_window(
    counts_json: str | None, now: datetime, succeeded: int, failed: int, window_seconds: float
) -> tuple[tuple[int, int], str]:
    """Add a batch's outcomes to the rolling window (JSON: bucket start → [succeeded, failed]); the
    window's totals with them, and the buckets to store (those older than the window dropped)."""
    if succeeded < 0 or failed < 0:
        raise ValueError(f"outcome counts must not be negative, got {succeeded}, {failed}")
    buckets = _window_buckets(counts_json, now, window_seconds)
    if succeeded or failed:
        bucket = _current_bucket(now)
        ok, bad = buckets.get(bucket, (0, 0))
        buckets[bucket] = [ok + succeeded, bad + failed]
    totals = (sum(v[0] for v in buckets.values()), sum(v[1] for v in buckets.values()))
    return totals, json.dumps(buckets, sort_keys=True)


def quarantine_text(status: QuarantineStatus) -> str:
    if status.reason not in QUARANTINE_REASONS:
        raise ValueError(f"quarantine reason must be one of {sorted(QUARANTINE_REASONS)}, got {status.reason!r}")
    required_text("quarantine start", status.since)
    required_text("next probe time", status.probe_at)
    return json.dumps(asdict(status), sort_keys=True)


def quarantine_from(text: str) -> QuarantineStatus:
    values = json.loads(text)
    return QuarantineStatus(**{name: values[name] for name in QUARANTINE_FIELDS if name in values})


def escrow_values(entry: EscrowEntry) -> dict[str, Any]:
    values = asdict(entry)
    values["entra_id"] = object_key(entry.entra_id)
    required_text("escrow failure code", entry.code)
    required_text("first failure time", entry.first_failed_at)
    if len(entry.description) > MAX_DESCRIPTION_CHARS:
        values["description"] = entry.description[: MAX_DESCRIPTION_CHARS - len(TRUNCATED)] + TRUNCATED
    return values


def escrow_from(values: Mapping[str, Any]) -> EscrowEntry:
    return EscrowEntry(**{name: values[name] for name in ESCROW_FIELDS if values.get(name) is not None})
