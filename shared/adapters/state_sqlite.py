"""The StateStore port over SQLite, for local runs and tests.

One connection per store, guarded by a lock, so threads share it safely; WAL and a busy timeout let
several processes use one file; `claim` runs under BEGIN IMMEDIATE so check-and-take is atomic across
processes too. ":memory:" gives a private in-process database."""
from __future__ import annotations

import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

from shared.core.errors import TransientError
from shared.core.escrow import EscrowEntry
from shared.core.models import FailureRecord, UserLink
from shared.core.quarantine import QuarantineStatus
from shared.core.safety import HeldDeactivation

from .state_codec import (
    ESCROW_FIELDS,
    FAILURE_FIELDS,
    HELD_FIELDS,
    LINK_FIELDS,
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

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS assignments (user_id TEXT PRIMARY KEY, roles TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS links ({", ".join(f"{name} TEXT" for name in LINK_FIELDS)}, PRIMARY KEY (entra_id));
CREATE TABLE IF NOT EXISTS leases (key TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS failures ({", ".join(f"{name} TEXT" for name in FAILURE_FIELDS)}, PRIMARY KEY (message_id));
CREATE TABLE IF NOT EXISTS held ({", ".join(f"{name} TEXT" for name in HELD_FIELDS)}, PRIMARY KEY (entra_id));
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS escrow ({", ".join(f"{name} {'INTEGER' if name in ('failures', 'retries') else 'TEXT'}"
                                            for name in ESCROW_FIELDS)}, PRIMARY KEY (entra_id));
CREATE TABLE IF NOT EXISTS create_intents (entra_id TEXT PRIMARY KEY, username TEXT NOT NULL);
"""
_MAX_PARAMETERS = 500  # well under SQLite's limit on host parameters per statement


class SqliteStateStore:
    def __init__(self, path: str | os.PathLike[str], *, clock: Clock = utc_now, busy_timeout_seconds: float = 15.0) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)  # e.g. .local/state.sqlite3 on a fresh clone
        # isolation_level=None: we issue BEGIN ourselves, so every transaction boundary is explicit.
        self._db = sqlite3.connect(path, timeout=busy_timeout_seconds, isolation_level=None, check_same_thread=False)
        with self._errors():
            if str(path) != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
            # One statement at a time, outside a transaction: on an existing database these take no
            # write lock, so opening a store never waits for another writer.
            for statement in filter(str.strip, _SCHEMA.split(";")):
                self._db.execute(statement)
            self._add_new_columns()

    def _add_new_columns(self) -> None:
        """A database made by an older version lacks the record fields added since: add them (null
        reads as the field's default)."""
        for table, names in (("links", LINK_FIELDS), ("failures", FAILURE_FIELDS), ("held", HELD_FIELDS)):
            present = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for name in names:
                if name not in present:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} TEXT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "SqliteStateStore":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # cursors
    def get_cursor(self, name: str) -> str | None:
        row = self._fetch_one("SELECT value FROM cursors WHERE name = ?", (required_text("cursor name", name),))
        return row[0] if row else None

    def set_cursor(self, name: str, value: str | None) -> None:
        name, value = cursor_update(name, value)
        with self._transaction() as db:
            if value is None:
                db.execute("DELETE FROM cursors WHERE name = ?", (name,))
            else:
                db.execute(
                    "INSERT INTO cursors (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    (name, value),
                )

    # assignment snapshot
    def assignment_snapshot(self) -> dict[str, frozenset[str]]:
        with self._errors(), self._lock:
            rows = self._db.execute("SELECT user_id, roles FROM assignments").fetchall()
        return {user_id: decode_roles(roles) for user_id, roles in rows}

    def apply_assignment_changes(self, upserts: Mapping[str, frozenset[str]], removals: Iterable[str]) -> None:
        encoded, removed = assignment_changes(upserts, removals)
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO assignments (user_id, roles) VALUES (?, ?) "
                "ON CONFLICT (user_id) DO UPDATE SET roles = excluded.roles",
                encoded.items(),
            )
            db.executemany("DELETE FROM assignments WHERE user_id = ?", ((user_id,) for user_id in removed))

    # links
    def get_link(self, entra_id: str) -> UserLink | None:
        row = self._fetch_one(f"SELECT {', '.join(LINK_FIELDS)} FROM links WHERE entra_id = ?", (object_key(entra_id),))
        return link_from(dict(zip(LINK_FIELDS, row))) if row else None

    def put_link(self, link: UserLink) -> None:
        self._replace_row("links", link_values(link))

    def delete_link(self, entra_id: str) -> bool:
        with self._transaction() as db:
            return db.execute("DELETE FROM links WHERE entra_id = ?", (object_key(entra_id),)).rowcount > 0

    def links_to_salesforce_user(self, salesforce_id: str) -> list[UserLink]:
        with self._errors(), self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(LINK_FIELDS)} FROM links WHERE substr(salesforce_id, 1, 15) = ? ORDER BY entra_id",
                (salesforce_key(salesforce_id),),
            ).fetchall()
        return [link_from(dict(zip(LINK_FIELDS, row))) for row in rows]

    # create intents
    def put_create_intents(self, intents: Mapping[str, str]) -> None:
        rows = intent_rows(intents)
        with self._transaction() as db:
            db.executemany("INSERT OR REPLACE INTO create_intents (entra_id, username) VALUES (?, ?)", rows.items())

    def create_intents(self, entra_ids: Iterable[str]) -> dict[str, str]:
        keys = sorted({object_key(entra_id) for entra_id in entra_ids})
        found: dict[str, str] = {}
        for start in range(0, len(keys), _MAX_PARAMETERS):
            chunk = keys[start : start + _MAX_PARAMETERS]
            with self._errors(), self._lock:
                rows = self._db.execute(
                    f"SELECT entra_id, username FROM create_intents WHERE entra_id IN ({', '.join('?' for _ in chunk)})",
                    chunk,
                ).fetchall()
            found.update(rows)
        return found

    def delete_create_intents(self, entra_ids: Iterable[str]) -> None:
        keys = [(object_key(entra_id),) for entra_id in entra_ids]
        with self._transaction() as db:
            db.executemany("DELETE FROM create_intents WHERE entra_id = ?", keys)

    # leases
    def claim(self, key: str, owner: str, ttl_seconds: float) -> bool:
        required_text("lease key", key)
        required_text("lease owner", owner)
        now = self._clock()
        expires_at = lease_expiry(now, ttl_seconds)
        with self._transaction() as db:
            row = db.execute("SELECT owner, expires_at FROM leases WHERE key = ?", (key,)).fetchone()
            if row and not lease_is_free(row[0], row[1], owner, now):
                return False
            db.execute("INSERT OR REPLACE INTO leases (key, owner, expires_at) VALUES (?, ?, ?)", (key, owner, expires_at))
            return True

    def release(self, key: str, owner: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM leases WHERE key = ? AND owner = ?", (required_text("lease key", key), owner))

    # failures
    def record_failure(self, failure: FailureRecord) -> None:
        self._replace_row("failures", failure_values(failure))

    def get_failure(self, message_id: str) -> FailureRecord | None:
        row = self._fetch_one(
            f"SELECT {', '.join(FAILURE_FIELDS)} FROM failures WHERE message_id = ?",
            (required_text("message id", message_id),),
        )
        return failure_from(dict(zip(FAILURE_FIELDS, row))) if row else None

    def delete_failure(self, message_id: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM failures WHERE message_id = ?", (required_text("message id", message_id),))

    # accidental-deletion prevention
    def reserve_deactivations(self, wanted: int, limit: int, window_seconds: float) -> int:
        now = self._clock()
        with self._transaction() as db:
            row = db.execute("SELECT value FROM counters WHERE name = 'deactivations'").fetchone()
            granted, counts = window_grant(row[0] if row else None, now, wanted, limit, window_seconds)
            db.execute("INSERT OR REPLACE INTO counters (name, value) VALUES ('deactivations', ?)", (counts,))
        return granted

    def count_active_links(self) -> int:
        row = self._fetch_one("SELECT COUNT(*) FROM links WHERE last_outcome IS NOT 'deactivate'", ())
        return row[0] if row else 0

    def held_deactivations(self) -> list[HeldDeactivation]:
        with self._errors(), self._lock:
            rows = self._db.execute(f"SELECT {', '.join(HELD_FIELDS)} FROM held ORDER BY held_at, entra_id").fetchall()
        return [held_from(dict(zip(HELD_FIELDS, row))) for row in rows]

    def put_held_deactivations(self, held: Sequence[HeldDeactivation]) -> None:
        rows = [held_values(h) for h in held]  # all checked before any is written
        with self._transaction() as db:
            db.executemany(
                f"INSERT OR REPLACE INTO held ({', '.join(HELD_FIELDS)}) VALUES ({', '.join('?' for _ in HELD_FIELDS)})",
                [tuple(row[name] for name in HELD_FIELDS) for row in rows],
            )

    def delete_held_deactivations(self, entra_ids: Iterable[str]) -> None:
        keys = [(object_key(entra_id),) for entra_id in entra_ids]
        with self._transaction() as db:
            db.executemany("DELETE FROM held WHERE entra_id = ?", keys)

    # quarantine
    def record_outcomes(self, succeeded: int, failed: int, window_seconds: float) -> tuple[int, int]:
        now = self._clock()
        with self._transaction() as db:
            row = db.execute("SELECT value FROM counters WHERE name = 'outcomes'").fetchone()
            totals, counts = outcome_window(row[0] if row else None, now, succeeded, failed, window_seconds)
            db.execute("INSERT OR REPLACE INTO counters (name, value) VALUES ('outcomes', ?)", (counts,))
        return totals

    def clear_outcomes(self) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM counters WHERE name = 'outcomes'")

    def get_quarantine(self) -> QuarantineStatus | None:
        row = self._fetch_one("SELECT value FROM counters WHERE name = 'quarantine'", ())
        return quarantine_from(row[0]) if row else None

    def put_quarantine(self, status: QuarantineStatus | None) -> None:
        text = quarantine_text(status) if status is not None else None
        with self._transaction() as db:
            if text is None:
                db.execute("DELETE FROM counters WHERE name = 'quarantine'")
            else:
                db.execute("INSERT OR REPLACE INTO counters (name, value) VALUES ('quarantine', ?)", (text,))

    # escrow
    def escrows(self) -> list[EscrowEntry]:
        with self._errors(), self._lock:
            rows = self._db.execute(f"SELECT {', '.join(ESCROW_FIELDS)} FROM escrow").fetchall()
        return [escrow_from(dict(zip(ESCROW_FIELDS, row))) for row in rows]

    def get_escrow(self, entra_id: str) -> EscrowEntry | None:
        row = self._fetch_one(f"SELECT {', '.join(ESCROW_FIELDS)} FROM escrow WHERE entra_id = ?", (object_key(entra_id),))
        return escrow_from(dict(zip(ESCROW_FIELDS, row))) if row else None

    def put_escrow(self, entry: EscrowEntry) -> None:
        self._replace_row("escrow", escrow_values(entry))

    def delete_escrows(self, entra_ids: Iterable[str]) -> None:
        keys = [(object_key(entra_id),) for entra_id in entra_ids]
        with self._transaction() as db:
            db.executemany("DELETE FROM escrow WHERE entra_id = ?", keys)

    # plumbing
    def _fetch_one(self, sql: str, parameters: tuple[str, ...]) -> tuple | None:
        with self._errors(), self._lock:
            return self._db.execute(sql, parameters).fetchone()

    def _replace_row(self, table: str, values: Mapping[str, object]) -> None:
        columns = ", ".join(values)
        placeholders = ", ".join("?" for _ in values)
        with self._transaction() as db:
            db.execute(f"INSERT OR REPLACE INTO {table} ({columns}) VALUES ({placeholders})", tuple(values.values()))

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE takes the write lock up front, so a read-then-write cannot interleave with
        another writer (and waits up to the busy timeout instead of failing half-way)."""
        with self._errors(), self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    @staticmethod
    @contextmanager
    def _errors() -> Iterator[None]:
        """A locked or unavailable database is worth retrying; say so in the core's terms."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            raise TransientError(exc.sqlite_errorname or "SQLITE_ERROR", str(exc), system="state") from exc
