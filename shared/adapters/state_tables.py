"""The StateStore port over Azure Table Storage (azure-data-tables, sync client).

Eight tables named <prefix>Cursors, <prefix>Assignments, <prefix>Links, <prefix>Leases, <prefix>Failures,
<prefix>Held, <prefix>Counters and <prefix>Escrow, each created on first use. Per-user entities live in one of 16 partitions chosen by a stable hash of the
key, so snapshot writes batch into transactions (≤100 operations, one partition each) while load still
spreads. RowKeys are the keys with the characters Table Storage forbids escaped reversibly."""
from __future__ import annotations

import functools
import hashlib
import re
import threading
from collections import defaultdict
from typing import Any, Callable, Iterable, Mapping, ParamSpec, Sequence, TypeVar

from azure.core import MatchConditions
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableServiceClient, TableTransactionError, UpdateMode

from shared.core.errors import PermanentError, TransientError
from shared.core.escrow import EscrowEntry
from shared.core.models import FailureRecord, UserLink
from shared.core.quarantine import QuarantineStatus
from shared.core.safety import HeldDeactivation

from .state_codec import (
    Clock,
    assignment_changes,
    cursor_update,
    decode_roles,
    escrow_from,
    escrow_values,
    failure_from,
    failure_values,
    held_from,
    held_values,
    intent_rows,
    lease_expiry,
    lease_is_free,
    link_from,
    link_values,
    object_key,
    outcome_window,
    quarantine_from,
    quarantine_text,
    required_text,
    salesforce_key,
    utc_now,
    window_grant,
)

_TABLE_KINDS = ("Cursors", "Assignments", "Links", "Leases", "Failures", "Held", "Counters", "Escrow",
                "CreateIntents")
_TABLE_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,50}$")
_TRANSACTION_LIMIT = 100
_CURSOR_PARTITION = "cursor"
# Each attempt loses only if another owner changed the lease in between, so a few suffice.
_CLAIM_ATTEMPTS = 3
_COUNTER_PARTITION = "counter"
_DEACTIVATIONS = "deactivations"
_OUTCOMES = "outcomes"
_QUARANTINE = "quarantine"
# Every worker that deactivates in a batch updates one counter entity; a lost race only re-reads it.
_RESERVE_ATTEMPTS = 10

# Forbidden in keys: / \ # ? and control characters. ' and % trip some URL handling, and ! is our escape.
_UNSAFE_KEY_CHARS = re.compile(r"[/\\#?'%!\x00-\x1f\x7f-\x9f]")
_KEY_ESCAPE = re.compile(r"!([0-9A-F]{2})")

P = ParamSpec("P")
R = TypeVar("R")


def encode_key(key: str) -> str:
    """A PartitionKey/RowKey-safe spelling of key: each unsafe character becomes !XX (its hex code)."""
    return _UNSAFE_KEY_CHARS.sub(lambda match: f"!{ord(match.group()):02X}", key)


def decode_key(text: str) -> str:
    return _KEY_ESCAPE.sub(lambda match: chr(int(match.group(1), 16)), text)


def _bucket(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[0]


def _entity_address(key: str) -> dict[str, str]:
    return {"PartitionKey": _bucket(key), "RowKey": encode_key(key)}


def _translate_errors(method: Callable[P, R]) -> Callable[P, R]:
    """Storage failures leave the adapter as the core's errors: a rejected request (400, 413) is
    permanent, anything else (throttling, outages, auth not yet propagated, network) transient."""

    @functools.wraps(method)
    def translated(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except HttpResponseError as exc:
            # error_code is a TableErrorCode (a str enum) or a plain str; keep the service's own spelling.
            code = str(getattr(exc.error_code, "value", exc.error_code) or f"HTTP_{exc.status_code}")
            error_type = PermanentError if exc.status_code in (400, 413) else TransientError
            raise error_type(code, exc.message, system="state") from exc
        except AzureError as exc:
            raise TransientError(type(exc).__name__, str(exc), system="state") from exc

    return translated


class TableStateStore:
    """Build with from_connection_string (Azurite, or a key-based account) or from_endpoint (Azure,
    with a managed identity credential and no shared keys)."""

    def __init__(self, service: TableServiceClient, *, table_prefix: str = "provisioning", clock: Clock = utc_now) -> None:
        if not _TABLE_PREFIX.match(table_prefix):
            raise ValueError(f"table prefix must be 1-51 letters or digits starting with a letter, got {table_prefix!r}")
        self._service = service
        self._clock = clock
        self._table_names = {kind: f"{table_prefix}{kind}" for kind in _TABLE_KINDS}
        self._tables: dict[str, TableClient] = {}
        self._tables_lock = threading.Lock()

    @classmethod
    def from_connection_string(cls, connection_string: str, **options: Any) -> "TableStateStore":
        return cls(TableServiceClient.from_connection_string(connection_string), **options)

    @classmethod
    def from_endpoint(cls, endpoint: str, credential: TokenCredential, **options: Any) -> "TableStateStore":
        """endpoint: the account's table endpoint, e.g. https://<account>.table.core.windows.net."""
        return cls(TableServiceClient(endpoint=endpoint, credential=credential), **options)

    def close(self) -> None:
        for table in self._tables.values():
            table.close()
        self._service.close()

    def __enter__(self) -> "TableStateStore":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # cursors
    @_translate_errors
    def get_cursor(self, name: str) -> str | None:
        entity = self._get(self._table("Cursors"), _CURSOR_PARTITION, encode_key(required_text("cursor name", name)))
        return entity["value"] if entity else None

    @_translate_errors
    def set_cursor(self, name: str, value: str | None) -> None:
        name, value = cursor_update(name, value)
        table = self._table("Cursors")
        row_key = encode_key(name)
        if value is None:
            table.delete_entity(_CURSOR_PARTITION, row_key)
        else:
            entity = {"PartitionKey": _CURSOR_PARTITION, "RowKey": row_key, "value": value}
            table.upsert_entity(entity, mode=UpdateMode.REPLACE)

    # assignment snapshot
    @_translate_errors
    def assignment_snapshot(self) -> dict[str, frozenset[str]]:
        entities = self._table("Assignments").list_entities(select=["RowKey", "roles"])
        return {decode_key(entity["RowKey"]): decode_roles(entity.get("roles") or "") for entity in entities}

    @_translate_errors
    def apply_assignment_changes(self, upserts: Mapping[str, frozenset[str]], removals: Iterable[str]) -> None:
        encoded, removed = assignment_changes(upserts, removals)
        operations: list[tuple[Any, ...]] = [
            ("upsert", {**_entity_address(user_id), "roles": roles}, {"mode": UpdateMode.REPLACE})
            for user_id, roles in encoded.items()
        ]
        operations += [("delete", _entity_address(user_id)) for user_id in removed]
        self._submit_by_partition(self._table("Assignments"), operations)

    # links
    @_translate_errors
    def get_link(self, entra_id: str) -> UserLink | None:
        key = object_key(entra_id)
        entity = self._get(self._table("Links"), _bucket(key), encode_key(key))
        return link_from(entity) if entity else None

    @_translate_errors
    def put_link(self, link: UserLink) -> None:
        values = link_values(link)
        self._put(self._table("Links"), values["entra_id"], values)

    @_translate_errors
    def delete_link(self, entra_id: str) -> bool:
        key = object_key(entra_id)
        table = self._table("Links")
        if self._get(table, _bucket(key), encode_key(key)) is None:
            return False
        table.delete_entity(_bucket(key), encode_key(key))
        return True

    @_translate_errors
    def links_to_salesforce_user(self, salesforce_id: str) -> list[UserLink]:
        # Ids are letters and digits, so every id starting with the 15-character key sorts below key + "~".
        key = salesforce_key(salesforce_id)
        entities = self._table("Links").query_entities(
            "salesforce_id ge @low and salesforce_id lt @high", parameters={"low": key, "high": key + "~"})
        links = [link_from(entity) for entity in entities if entity["salesforce_id"][:15] == key]
        return sorted(links, key=lambda link: link.entra_id)

    # create intents
    @_translate_errors
    def put_create_intents(self, intents: Mapping[str, str]) -> None:
        operations = [("upsert", {**_entity_address(key), "username": username}, {"mode": UpdateMode.REPLACE})
                      for key, username in intent_rows(intents).items()]
        self._submit_by_partition(self._table("CreateIntents"), operations)

    @_translate_errors
    def create_intents(self, entra_ids: Iterable[str]) -> dict[str, str]:
        table = self._table("CreateIntents")
        found = {}
        for key in sorted({object_key(entra_id) for entra_id in entra_ids}):
            entity = self._get(table, _bucket(key), encode_key(key))
            if entity is not None:
                found[key] = entity["username"]
        return found

    @_translate_errors
    def delete_create_intents(self, entra_ids: Iterable[str]) -> None:
        keys = {object_key(entra_id) for entra_id in entra_ids}
        self._submit_by_partition(self._table("CreateIntents"), [("delete", _entity_address(key)) for key in sorted(keys)])

    # leases
    @_translate_errors
    def claim(self, key: str, owner: str, ttl_seconds: float) -> bool:
        """Insert if absent; otherwise replace only if the lease is ours or expired, and only if nobody
        changed it since we read it (ETag), so of several racing claimers exactly one wins."""
        required_text("lease key", key)
        required_text("lease owner", owner)
        now = self._clock()
        lease = {**_entity_address(key), "owner": owner, "expires_at": lease_expiry(now, ttl_seconds)}
        table = self._table("Leases")
        for _ in range(_CLAIM_ATTEMPTS):
            current = self._get(table, lease["PartitionKey"], lease["RowKey"])
            try:
                if current is None:
                    table.create_entity(lease)
                    return True
                if not lease_is_free(current["owner"], current["expires_at"], owner, now):
                    return False
                table.update_entity(
                    lease, mode=UpdateMode.REPLACE, etag=current.metadata["etag"], match_condition=MatchConditions.IfNotModified
                )
                return True
            except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
                continue  # someone else created, changed or released it since we read: look again
        return False

    @_translate_errors
    def release(self, key: str, owner: str) -> None:
        address = _entity_address(required_text("lease key", key))
        table = self._table("Leases")
        current = self._get(table, address["PartitionKey"], address["RowKey"])
        if current is None or current["owner"] != owner:
            return
        try:
            table.delete_entity(
                address["PartitionKey"], address["RowKey"],
                etag=current.metadata["etag"], match_condition=MatchConditions.IfNotModified,
            )
        except ResourceModifiedError:
            pass  # expired and taken over by another owner in between: theirs now, leave it

    # failures
    @_translate_errors
    def record_failure(self, failure: FailureRecord) -> None:
        values = failure_values(failure)
        self._put(self._table("Failures"), values["message_id"], values)

    @_translate_errors
    def get_failure(self, message_id: str) -> FailureRecord | None:
        key = required_text("message id", message_id)
        entity = self._get(self._table("Failures"), _bucket(key), encode_key(key))
        return failure_from(entity) if entity else None

    @_translate_errors
    def delete_failure(self, message_id: str) -> None:
        key = required_text("message id", message_id)
        self._table("Failures").delete_entity(_bucket(key), encode_key(key))

    # accidental-deletion prevention
    @_translate_errors
    def reserve_deactivations(self, wanted: int, limit: int, window_seconds: float) -> int:
        """Read the counter, add, write back only if nobody changed it since (ETag)."""
        return self._update_counter(
            _DEACTIVATIONS, lambda counts: window_grant(counts, self._clock(), wanted, limit, window_seconds))

    def _update_counter(self, name: str, update: Callable[[str | None], tuple[R, str]]) -> R:
        """Read a counter entity, compute its new value, write it back only if nobody changed it
        since (ETag); `update` maps the stored value to (result, new value)."""
        table = self._table("Counters")
        for _ in range(_RESERVE_ATTEMPTS):
            current = self._get(table, _COUNTER_PARTITION, name)
            result, value = update(current["value"] if current else None)
            entity = {"PartitionKey": _COUNTER_PARTITION, "RowKey": name, "value": value}
            try:
                if current is None:
                    table.create_entity(entity)
                else:
                    table.update_entity(entity, mode=UpdateMode.REPLACE, etag=current.metadata["etag"],
                                        match_condition=MatchConditions.IfNotModified)
                return result
            except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
                continue
        raise TransientError("CounterContended", f"the {name} counter kept changing under us", system="state")

    @_translate_errors
    def count_active_links(self) -> int:
        entities = self._table("Links").list_entities(select=["RowKey", "last_outcome"])
        return sum(1 for entity in entities if entity.get("last_outcome") != "deactivate")

    @_translate_errors
    def held_deactivations(self) -> list[HeldDeactivation]:
        held = [held_from(entity) for entity in self._table("Held").list_entities()]
        return sorted(held, key=lambda h: (h.held_at, h.entra_id))

    @_translate_errors
    def put_held_deactivations(self, held: Sequence[HeldDeactivation]) -> None:
        rows = [held_values(h) for h in held]  # all checked before any is written
        operations = [
            ("upsert", {**_entity_address(row["entra_id"]), **{k: v for k, v in row.items() if v is not None}},
             {"mode": UpdateMode.REPLACE})
            for row in rows
        ]
        self._submit_by_partition(self._table("Held"), operations)

    @_translate_errors
    def delete_held_deactivations(self, entra_ids: Iterable[str]) -> None:
        keys = {object_key(entra_id) for entra_id in entra_ids}
        self._submit_by_partition(self._table("Held"), [("delete", _entity_address(key)) for key in sorted(keys)])

    # quarantine
    @_translate_errors
    def record_outcomes(self, succeeded: int, failed: int, window_seconds: float) -> tuple[int, int]:
        return self._update_counter(
            _OUTCOMES, lambda counts: outcome_window(counts, self._clock(), succeeded, failed, window_seconds))

    @_translate_errors
    def clear_outcomes(self) -> None:
        self._table("Counters").delete_entity(_COUNTER_PARTITION, _OUTCOMES)

    @_translate_errors
    def get_quarantine(self) -> QuarantineStatus | None:
        entity = self._get(self._table("Counters"), _COUNTER_PARTITION, _QUARANTINE)
        return quarantine_from(entity["value"]) if entity else None

    @_translate_errors
    def put_quarantine(self, status: QuarantineStatus | None) -> None:
        table = self._table("Counters")
        if status is None:
            table.delete_entity(_COUNTER_PARTITION, _QUARANTINE)
        else:
            entity = {"PartitionKey": _COUNTER_PARTITION, "RowKey": _QUARANTINE, "value": quarantine_text(status)}
            table.upsert_entity(entity, mode=UpdateMode.REPLACE)

    # escrow
    @_translate_errors
    def escrows(self) -> list[EscrowEntry]:
        return [escrow_from(entity) for entity in self._table("Escrow").list_entities()]

    @_translate_errors
    def get_escrow(self, entra_id: str) -> EscrowEntry | None:
        key = object_key(entra_id)
        entity = self._get(self._table("Escrow"), _bucket(key), encode_key(key))
        return escrow_from(entity) if entity else None

    @_translate_errors
    def put_escrow(self, entry: EscrowEntry) -> None:
        values = escrow_values(entry)
        self._put(self._table("Escrow"), values["entra_id"], values)

    @_translate_errors
    def delete_escrows(self, entra_ids: Iterable[str]) -> None:
        keys = {object_key(entra_id) for entra_id in entra_ids}
        self._submit_by_partition(self._table("Escrow"), [("delete", _entity_address(key)) for key in sorted(keys)])

    # plumbing
    def _table(self, kind: str) -> TableClient:
        with self._tables_lock:
            table = self._tables.get(kind)
            if table is None:
                table = self._tables[kind] = self._service.create_table_if_not_exists(self._table_names[kind])
            return table

    @staticmethod
    def _get(table: TableClient, partition_key: str, row_key: str) -> Any:
        try:
            return table.get_entity(partition_key, row_key)
        except ResourceNotFoundError:
            return None

    @staticmethod
    def _put(table: TableClient, key: str, values: Mapping[str, Any]) -> None:
        # Tables store no nulls: leave None out, and reading gives the model's default (None) back.
        entity = {**_entity_address(key), **{name: value for name, value in values.items() if value is not None}}
        table.upsert_entity(entity, mode=UpdateMode.REPLACE)

    @classmethod
    def _submit_by_partition(cls, table: TableClient, operations: list[tuple[Any, ...]]) -> None:
        """Transactions hold one partition and at most 100 operations: group, then submit each."""
        by_partition: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        for operation in operations:
            by_partition[operation[1]["PartitionKey"]].append(operation)
        for grouped in by_partition.values():
            for start in range(0, len(grouped), _TRANSACTION_LIMIT):
                cls._submit(table, grouped[start : start + _TRANSACTION_LIMIT])

    @staticmethod
    def _submit(table: TableClient, operations: list[tuple[Any, ...]]) -> None:
        """Submit one transaction; a delete of a user already gone (a replayed change) is dropped and
        the rest resubmitted, since a transaction fails whole on any 404."""
        while operations:
            try:
                table.submit_transaction(operations)
                return
            except TableTransactionError as exc:
                failed = operations[exc.index] if 0 <= exc.index < len(operations) else None
                if exc.status_code != 404 or failed is None or failed[0] != "delete":
                    raise
                operations = [op for op in operations if op is not failed]
