"""One contract for the StateStore port, run against SQLite and against Table Storage on Azurite.

Azurite is started here on a free loopback port (scripts/install-azurite.sh installs it); each test gets
its own table prefix, so tests share one Azurite process but never each other's data."""
from __future__ import annotations

import base64
import json
import random
import sqlite3
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterator

import pytest
from azure.core.credentials import AccessToken

from emulators import azurite as azurite_launcher
from shared.adapters.state_codec import MAX_DESCRIPTION_CHARS
from shared.adapters.state_sqlite import SqliteStateStore
from shared.adapters.state_tables import TableStateStore, decode_key, encode_key
from shared.core.errors import PermanentError, TransientError
from shared.core.messages import ReconcileMessage
from shared.core.escrow import EscrowEntry
from shared.core.models import DEFAULT_ACCESS_ROLE_ID, FailureRecord, UserLink
from shared.core.quarantine import QuarantineStatus
from shared.core.ports import StateStore
from shared.core.safety import HeldDeactivation

AWKWARD_KEYS = ["a/b.c#d?e", "back\\slash", "quote'and%20percent", "bang!21", "tab\tnew\nline\x7f", "ünï/cødé", "!"]


class ManualClock:
    """Lease expiry is decided by the store's clock; tests move it instead of sleeping."""

    def __init__(self) -> None:
        self.now = datetime(2025, 1, 1, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def azurite() -> Iterator[azurite_launcher.Azurite]:
    with azurite_launcher.run_azurite() as running:
        yield running


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(params=["sqlite", "tables"])
def make_store(request: pytest.FixtureRequest, tmp_path, clock: ManualClock) -> Iterator[Callable[[], StateStore]]:
    """Makes store instances over one backing store: several instances behave like several workers."""
    if request.param == "sqlite":
        path = tmp_path / "not-yet-created" / "state.sqlite3"

        def new_store() -> StateStore:
            return SqliteStateStore(path, clock=clock)
    else:
        connection_string = request.getfixturevalue("azurite").connection_string
        prefix = f"t{uuid.uuid4().hex[:12]}"

        def new_store() -> StateStore:
            return TableStateStore.from_connection_string(connection_string, table_prefix=prefix, clock=clock)

    opened: list = []

    def make() -> StateStore:
        opened.append(new_store())
        return opened[-1]

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store: Callable[[], StateStore]) -> StateStore:
    return make_store()


def guid() -> str:
    return str(uuid.uuid4())


# cursors

def test_cursor_set_overwrite_delete(store: StateStore) -> None:
    delta_link = "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=" + "Ab-_~%2F" * 300
    assert store.get_cursor("users-delta") is None
    store.set_cursor("users-delta", "https://graph.microsoft.com/v1.0/users/delta?$skiptoken=page1")
    store.set_cursor("users-delta", delta_link)
    store.set_cursor("assignments/page#2?", "other")
    assert store.get_cursor("users-delta") == delta_link
    assert store.get_cursor("assignments/page#2?") == "other"
    with pytest.raises(TypeError, match="cursor value"):
        store.set_cursor("users-delta", 42)
    assert store.get_cursor("users-delta") == delta_link
    store.set_cursor("users-delta", None)
    store.set_cursor("never-set", None)
    assert store.get_cursor("users-delta") is None
    assert store.get_cursor("assignments/page#2?") == "other"


# assignment snapshot

def random_snapshot(size: int, seed: int) -> dict[str, frozenset[str]]:
    rng = random.Random(seed)
    roles = [DEFAULT_ACCESS_ROLE_ID] + [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(6)]
    return {
        str(uuid.UUID(int=rng.getrandbits(128))): frozenset(rng.sample(roles, rng.randint(0, 3))) for _ in range(size)
    }


def test_snapshot_of_2500_users_round_trips_exactly(make_store: Callable[[], StateStore]) -> None:
    snapshot = random_snapshot(2500, seed=1)
    assert any(not roles for roles in snapshot.values()) and any(len(roles) == 3 for roles in snapshot.values())
    writer = make_store()
    assert writer.assignment_snapshot() == {}
    writer.apply_assignment_changes(snapshot, [])
    assert make_store().assignment_snapshot() == snapshot


def test_apply_assignment_changes_upserts_and_removes(store: StateStore) -> None:
    snapshot = random_snapshot(300, seed=2)
    store.apply_assignment_changes(snapshot, [])
    users = sorted(snapshot)
    changed = {user: frozenset({guid()}) for user in users[:40]}
    added = random_snapshot(40, seed=3)
    removed = users[40:100]
    # Removing users that are not there (a replayed cycle) is harmless and must not stop the rest.
    already_gone = [guid() for _ in range(30)]
    store.apply_assignment_changes({**changed, **added}, removed + already_gone + removed[:5])
    expected = {**snapshot, **changed, **added}
    for user in removed:
        del expected[user]
    assert store.assignment_snapshot() == expected


def test_assignment_ids_are_stored_lower_case(store: StateStore) -> None:
    user = guid()
    store.apply_assignment_changes({user.upper(): frozenset({"Role-A"})}, [])
    assert store.assignment_snapshot() == {user: frozenset({"Role-A"})}
    store.apply_assignment_changes({}, [user.upper()])
    assert store.assignment_snapshot() == {}


def test_bad_assignment_changes_are_rejected_and_write_nothing(store: StateStore) -> None:
    user, other = guid(), guid()
    with pytest.raises(ValueError, match="both upserted and removed"):
        store.apply_assignment_changes({user: frozenset({"r"}), other: frozenset()}, [user.upper()])
    with pytest.raises(TypeError, match="set of strings"):
        store.apply_assignment_changes({other: "r1"}, [])  # a str would silently become a set of characters
    with pytest.raises(ValueError, match="without whitespace"):
        store.apply_assignment_changes({other: frozenset({"r 1"})}, [])
    with pytest.raises(ValueError, match="twice"):
        store.apply_assignment_changes({user: frozenset(), user.upper(): frozenset({"r"})}, [])
    assert store.assignment_snapshot() == {}


# links

def test_links_round_trip_every_field_and_overwrite(store: StateStore) -> None:
    entra_id = guid()
    full = UserLink(
        entra_id=entra_id,
        salesforce_id="005000000000001AAA",
        applied_hash="sha256:" + "ab" * 32,
        pending_email="new.address@contoso.com",
        last_outcome="updated",
        last_error_code="UNABLE_TO_LOCK_ROW",
        updated_at="2025-01-01T00:00:00.000000+00:00",
        permission_sets=(("PermissionSet:Sales_Ops", "0Pa5AB000000001AAA"), ("PermissionSetGroup:Support", "")),
    )
    assert store.get_link(entra_id) is None
    store.put_link(full)
    assert store.get_link(entra_id) == full
    assert store.get_link(entra_id.upper()) == full
    cleared = replace(full, salesforce_id="005000000000002AAA", pending_email=None, last_error_code=None, applied_hash="",
                      permission_sets=())
    store.put_link(cleared)
    assert store.get_link(entra_id) == cleared
    store.put_link(replace(full, entra_id=entra_id.upper()))
    assert store.get_link(entra_id) == full


def test_delete_link_forgets_only_that_user(store: StateStore) -> None:
    kept, dropped = UserLink(guid(), "005000000000001AAA"), UserLink(guid(), "005000000000002AAA")
    store.put_link(kept)
    store.put_link(dropped)
    assert store.delete_link(dropped.entra_id.upper()) is True
    assert store.get_link(dropped.entra_id) is None and store.get_link(kept.entra_id) == kept
    assert store.delete_link(dropped.entra_id) is False


def test_links_to_a_salesforce_user_by_15_or_18_character_id(store: StateStore) -> None:
    first, second = sorted([guid(), guid()])
    store.put_link(UserLink(first, "005Ab0000000XyZAAA"))
    store.put_link(UserLink(second, "005Ab0000000XyZ"))  # an older link kept the 15-character form
    store.put_link(UserLink(guid(), "005Ab0000000XyYAAA"))  # another user
    store.put_link(UserLink(guid(), "005ab0000000xyzAAA"))  # 15-character ids are case-sensitive: another user
    for spelling in ("005Ab0000000XyZAAA", "005Ab0000000XyZ"):
        assert [link.entra_id for link in store.links_to_salesforce_user(spelling)] == [first, second]
    assert store.links_to_salesforce_user("005000000000009AAA") == []


def test_link_without_salesforce_id_is_rejected(store: StateStore) -> None:
    with pytest.raises(ValueError, match="Salesforce user id"):
        store.put_link(UserLink(entra_id=guid(), salesforce_id=""))


# failures

def test_failures_keyed_by_awkward_message_ids(store: StateStore) -> None:
    entra_id = guid()
    message_id = ReconcileMessage.new(entra_id, "delta", "cursor-1").retry().message_id
    ids = [message_id, *AWKWARD_KEYS]
    for number, failure_id in enumerate(ids):
        store.record_failure(
            FailureRecord(failure_id, entra_id.upper(), "create", "DUPLICATE_USERNAME", f"failure {number}", "2025-01-01T00:00:00+00:00")
        )
    for number, failure_id in enumerate(ids):
        assert store.get_failure(failure_id) == FailureRecord(
            failure_id, entra_id, "create", "DUPLICATE_USERNAME", f"failure {number}", "2025-01-01T00:00:00+00:00"
        )
    assert store.get_failure("a/b.c#d") is None
    # A message too broken to name a user still gets its failure recorded.
    broken = FailureRecord("m/1", "", "decode", "InvalidMessage", "", "2025-01-01T00:00:00+00:00")
    store.record_failure(broken)
    assert store.get_failure("m/1") == broken
    store.delete_failure(message_id)
    store.delete_failure("a/b.c#d?e")
    store.delete_failure("never-recorded")
    assert store.get_failure(message_id) is None and store.get_failure("a/b.c#d?e") is None
    assert store.get_failure("back\\slash") is not None


def test_oversized_failure_description_is_cut_not_refused(store: StateStore) -> None:
    description = "Salesforce said: " + "x" * 40_000
    store.record_failure(FailureRecord("m/2", guid(), "update", "STRING_TOO_LONG", description, "2025-01-01T00:00:00+00:00"))
    stored = store.get_failure("m/2").description
    assert len(stored) == MAX_DESCRIPTION_CHARS and stored.startswith("Salesforce said: xxx") and stored.endswith("[truncated]")


# leases

def test_claim_and_release(store: StateStore) -> None:
    key = guid()
    assert store.claim(key, "worker-a", ttl_seconds=30)
    assert not store.claim(key, "worker-b", ttl_seconds=30)
    assert store.claim(key, "worker-a", ttl_seconds=30)  # already ours: renewed
    store.release(key, "worker-b")  # not theirs to release
    assert not store.claim(key, "worker-b", ttl_seconds=30)
    store.release(key, "worker-a")
    assert store.claim(key, "worker-b", ttl_seconds=30)
    store.release("never-claimed", "worker-a")
    assert store.claim("a/b.c#d?e", "worker-c", ttl_seconds=30)
    assert not store.claim("a/b.c#d?e", "worker-a", ttl_seconds=30)


def test_expired_lease_can_be_taken_and_old_owner_cannot_release_it(store: StateStore, clock: ManualClock) -> None:
    key = guid()
    assert store.claim(key, "worker-a", ttl_seconds=0.2)
    clock.advance(0.1)
    assert not store.claim(key, "worker-b", ttl_seconds=0.2)
    clock.advance(0.1)
    assert store.claim(key, "worker-b", ttl_seconds=0.2)
    store.release(key, "worker-a")
    assert not store.claim(key, "worker-c", ttl_seconds=0.2)


def test_renewing_a_lease_extends_it(store: StateStore, clock: ManualClock) -> None:
    key = guid()
    assert store.claim(key, "worker-a", ttl_seconds=0.2)
    clock.advance(0.15)
    assert store.claim(key, "worker-a", ttl_seconds=0.2)
    clock.advance(0.15)
    assert not store.claim(key, "worker-b", ttl_seconds=0.2)


def test_claim_rejects_bad_input(store: StateStore) -> None:
    with pytest.raises(ValueError, match="ttl"):
        store.claim(guid(), "worker-a", ttl_seconds=0)
    with pytest.raises(ValueError, match="lease owner"):
        store.claim(guid(), "", ttl_seconds=1)
    with pytest.raises(ValueError, match="lease key"):
        store.claim("", "worker-a", ttl_seconds=1)


@pytest.mark.parametrize("instances", ["one-per-thread", "shared"])
def test_exactly_one_of_eight_racing_claimers_wins(make_store: Callable[[], StateStore], clock: ManualClock, instances: str) -> None:
    shared = make_store()
    stores = [make_store() if instances == "one-per-thread" else shared for _ in range(8)]
    # An expired lease is the hardest case: every claimer sees it free and all try to replace it.
    expired, fresh = guid(), guid()
    assert shared.claim(expired, "previous-owner", ttl_seconds=0.2)
    clock.advance(1)
    for key in (fresh, expired):
        start = threading.Barrier(len(stores))

        def race(worker: int) -> bool:
            start.wait()
            return stores[worker].claim(key, f"worker-{worker}", ttl_seconds=30)

        with ThreadPoolExecutor(len(stores)) as pool:
            results = list(pool.map(race, range(len(stores))))
        assert results.count(True) == 1, (key == fresh, results)
        winner = results.index(True)
        assert not shared.claim(key, "late-comer", ttl_seconds=30)
        shared.release(key, f"worker-{winner}")
        assert shared.claim(key, "late-comer", ttl_seconds=30)


# accidental-deletion prevention

def test_deactivation_reservations_share_one_rolling_window(make_store: Callable[[], StateStore], clock: ManualClock) -> None:
    worker_a, worker_b = make_store(), make_store()
    assert worker_a.reserve_deactivations(3, limit=5, window_seconds=3600) == 3
    assert worker_b.reserve_deactivations(4, limit=5, window_seconds=3600) == 2  # the window is shared
    assert worker_a.reserve_deactivations(1, limit=5, window_seconds=3600) == 0
    assert worker_a.reserve_deactivations(0, limit=5, window_seconds=3600) == 0
    assert worker_b.reserve_deactivations(2, limit=6, window_seconds=3600) == 1  # a raised limit counts the same past
    clock.advance(1800)
    assert worker_a.reserve_deactivations(2, limit=7, window_seconds=3600) == 1
    clock.advance(1860)  # the first minute's 6 have left the window; the 1 from half an hour ago has not
    assert worker_b.reserve_deactivations(9, limit=7, window_seconds=3600) == 6
    with pytest.raises(ValueError, match="wanted"):
        worker_a.reserve_deactivations(-1, limit=5, window_seconds=3600)


def test_racing_reservations_never_exceed_the_limit(make_store: Callable[[], StateStore]) -> None:
    stores = [make_store() for _ in range(6)]
    start = threading.Barrier(len(stores))

    def reserve(worker: int) -> int:
        start.wait()
        return stores[worker].reserve_deactivations(4, limit=10, window_seconds=3600)

    with ThreadPoolExecutor(len(stores)) as pool:
        granted = list(pool.map(reserve, range(len(stores))))
    assert sum(granted) == 10, granted


def test_active_links_leave_out_deactivated_users(store: StateStore) -> None:
    assert store.count_active_links() == 0
    for outcome in ("create", "update", "", "deactivate", "noop", "deactivate"):
        store.put_link(UserLink(entra_id=guid(), salesforce_id="005000000000001AAA", last_outcome=outcome))
    assert store.count_active_links() == 4


def test_held_deactivations_round_trip_replace_and_delete(make_store: Callable[[], StateStore]) -> None:
    store, other = make_store(), make_store()
    first, second, third = guid(), guid(), guid()
    held = [
        HeldDeactivation(second.upper(), "005000000000002AAA", "not assigned", "2025-01-01T00:00:02.000000+00:00"),
        HeldDeactivation(first, "005000000000001AAA", "disabled in Entra", "2025-01-01T00:00:01.000000+00:00"),
        HeldDeactivation(third, "005000000000003AAA", "deleted in Entra", "2025-01-01T00:00:03.000000+00:00",
                         status="rejected", decided_at="2025-01-01T01:00:00.000000+00:00"),
    ]
    assert store.held_deactivations() == []
    store.put_held_deactivations(held)
    assert other.held_deactivations() == [held[1], replace(held[0], entra_id=second), held[2]]
    released = replace(held[1], status="released", decided_at="2025-01-01T02:00:00.000000+00:00")
    other.put_held_deactivations([released])
    store.delete_held_deactivations([third.upper(), guid()])
    assert store.held_deactivations() == [released, replace(held[0], entra_id=second)]
    with pytest.raises(ValueError, match="hold status"):
        store.put_held_deactivations([replace(held[0], status="maybe"), held[2]])
    with pytest.raises(ValueError, match="Salesforce user id"):
        store.put_held_deactivations([replace(held[2], salesforce_id="")])
    assert third not in {h.entra_id for h in store.held_deactivations()}  # nothing of a rejected call written
    store.put_held_deactivations([])
    store.delete_held_deactivations([])


# quarantine

def test_outcomes_share_one_rolling_window_until_cleared(make_store: Callable[[], StateStore], clock: ManualClock) -> None:
    worker_a, worker_b = make_store(), make_store()
    assert worker_a.record_outcomes(0, 0, window_seconds=900) == (0, 0)
    assert worker_a.record_outcomes(8, 2, window_seconds=900) == (8, 2)
    assert worker_b.record_outcomes(1, 5, window_seconds=900) == (9, 7)  # the window is shared
    clock.advance(600)
    assert worker_a.record_outcomes(0, 3, window_seconds=900) == (9, 10)
    clock.advance(360)  # the first minute's outcomes have left the window; those of 6 minutes ago have not
    assert worker_b.record_outcomes(2, 0, window_seconds=900) == (2, 3)
    worker_a.clear_outcomes()
    assert worker_b.record_outcomes(1, 0, window_seconds=900) == (1, 0)
    worker_a.clear_outcomes()
    worker_a.clear_outcomes()  # clearing an empty window is fine
    with pytest.raises(ValueError, match="negative"):
        worker_a.record_outcomes(-1, 0, window_seconds=900)


def test_racing_outcome_records_lose_nothing(make_store: Callable[[], StateStore]) -> None:
    stores = [make_store() for _ in range(5)]
    start = threading.Barrier(len(stores))

    def record(worker: int) -> None:
        start.wait()
        stores[worker].record_outcomes(3, 1, window_seconds=900)

    with ThreadPoolExecutor(len(stores)) as pool:
        list(pool.map(record, range(len(stores))))
    assert stores[0].record_outcomes(0, 0, window_seconds=900) == (15, 5)


def test_quarantine_status_round_trips_replaces_and_deletes(make_store: Callable[[], StateStore]) -> None:
    store, other = make_store(), make_store()
    assert store.get_quarantine() is None
    status = QuarantineStatus("failure_ratio", "45 of 60 Salesforce operations failed", "SERVER_UNAVAILABLE",
                              since="2025-01-01T00:00:00.000000+00:00", probe_at="2025-01-01T00:01:00.000000+00:00")
    store.put_quarantine(status)
    assert other.get_quarantine() == status
    lifted = replace(status, reason="auth", probes=3, active=False, notified_reason="auth",
                     lifted_at="2025-01-01T02:00:00.000000+00:00", lifted_by="probe")
    other.put_quarantine(lifted)
    assert store.get_quarantine() == lifted
    with pytest.raises(ValueError, match="quarantine reason"):
        store.put_quarantine(replace(status, reason="boredom"))  # type: ignore[arg-type]
    assert store.get_quarantine() == lifted  # a refused write changes nothing
    store.put_quarantine(None)
    assert other.get_quarantine() is None
    store.put_quarantine(None)


# escrow

def test_escrow_entries_round_trip_replace_and_delete(make_store: Callable[[], StateStore]) -> None:
    store, other = make_store(), make_store()
    first, second = guid(), guid()
    entry = EscrowEntry(first.upper(), "DUPLICATE_USERNAME", "Duplicate Username. " * 600, "create",
                        first_failed_at="2025-01-01T00:00:00.000000+00:00", last_failed_at="2025-01-01T00:00:00.000000+00:00",
                        next_retry_at="2025-01-01T06:00:00.000000+00:00")
    assert store.escrows() == [] and store.get_escrow(first) is None
    store.put_escrow(entry)
    stored = other.get_escrow(first)
    assert stored is not None and stored.entra_id == first and len(stored.description) == MAX_DESCRIPTION_CHARS
    assert replace(stored, description=entry.description) == replace(entry, entra_id=first)
    retried = replace(stored, failures=2, retries=1, next_retry_at="", reported_code="DUPLICATE_USERNAME")
    other.put_escrow(retried)
    store.put_escrow(replace(entry, entra_id=second, code="RetriesExhausted", description="gave up"))
    assert sorted(store.escrows(), key=lambda e: e.entra_id != first)[0] == retried
    assert {e.entra_id for e in other.escrows()} == {first, second}
    with pytest.raises(ValueError, match="failure code"):
        store.put_escrow(replace(entry, code=""))
    store.delete_escrows([second.upper(), guid()])
    assert other.escrows() == [retried]
    store.delete_escrows([])


# create intents

def test_create_intents_round_trip_replace_and_delete(make_store: Callable[[], StateStore]) -> None:
    store, other = make_store(), make_store()
    first, second, never = guid(), guid(), guid()
    store.put_create_intents({first.upper(): "o'brien@contoso.com", second: "ann@contoso.com"})
    assert other.create_intents([first, second.upper(), never]) == {first: "o'brien@contoso.com",
                                                                    second: "ann@contoso.com"}
    other.put_create_intents({second: "ann.new@contoso.com"})
    store.delete_create_intents([first, never])
    assert store.create_intents([first, second]) == {second: "ann.new@contoso.com"}
    with pytest.raises(ValueError, match="Username"):
        store.put_create_intents({first: "ok@contoso.com", guid(): ""})
    assert store.create_intents([first]) == {}  # nothing of a rejected call written
    store.put_create_intents({})
    store.delete_create_intents([])
    assert store.create_intents([]) == {}


# adapter-specific edges

@pytest.mark.parametrize("key", AWKWARD_KEYS + ["plain-guid-0f8fad5b", "!2F", "%2F"])
def test_table_key_encoding_is_reversible_and_safe(key: str) -> None:
    encoded = encode_key(key)
    assert decode_key(encoded) == key
    assert not set(encoded) & set("/\\#?'%") and all(ord(ch) >= 0x20 and not 0x7F <= ord(ch) <= 0x9F for ch in encoded)


def test_table_store_rejects_a_bad_table_prefix() -> None:
    with pytest.raises(ValueError, match="table prefix"):
        TableStateStore.from_connection_string("UseDevelopmentStorage=true", table_prefix="bad-prefix")


def test_table_storage_rejection_becomes_a_permanent_error(azurite: azurite_launcher.Azurite) -> None:
    store = TableStateStore.from_connection_string(azurite.connection_string, table_prefix=f"t{uuid.uuid4().hex[:12]}")
    # Table Storage caps a string property at 64 KiB (32K UTF-16 characters).
    with store, pytest.raises(PermanentError) as raised:
        store.set_cursor("users-delta", "x" * 40_000)
    assert (raised.value.code, raised.value.system) == ("PropertyValueTooLarge", "state")


class StorageTokenCredential:
    """Mints unsigned tokens of the shape Azurite's basic OAuth check accepts (issuer, audience,
    lifetime); records the scopes the SDK asks for."""

    def __init__(self, audience: str = "https://storage.azure.com") -> None:
        self.audience = audience
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **_options: object) -> AccessToken:
        self.scopes.append(scopes)
        now = int(time.time())
        claims = {"aud": self.audience, "iss": f"https://sts.windows.net/{guid()}/", "iat": now, "nbf": now - 60, "exp": now + 3600}
        parts = [{"alg": "none", "typ": "JWT"}, claims]
        token = ".".join(base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=") for part in parts) + "."
        return AccessToken(token, now + 3600)


def test_table_store_over_https_with_a_token_credential_and_no_shared_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with azurite_launcher.run_azurite(tls=True) as azurite:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(azurite.ca_file))
        credential = StorageTokenCredential()
        with TableStateStore.from_endpoint(azurite.table_endpoint, credential, table_prefix="oauth") as store:
            store.set_cursor("users-delta", "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=x")
            assert store.get_cursor("users-delta") == "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=x"
        assert set(credential.scopes) == {("https://storage.azure.com/.default",)}
        # Azurite really checks the token: one minted for another resource is refused.
        wrong_audience = StorageTokenCredential(audience="https://graph.microsoft.com")
        with TableStateStore.from_endpoint(azurite.table_endpoint, wrong_audience, table_prefix="oauth") as store:
            with pytest.raises(TransientError) as raised:
                store.get_cursor("users-delta")
        assert raised.value.code == "AuthenticationFailed"


def test_locked_sqlite_database_is_a_transient_error(tmp_path) -> None:
    path = tmp_path / "state.sqlite3"
    with SqliteStateStore(path) as ready:
        ready.set_cursor("c", "1")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with SqliteStateStore(path, busy_timeout_seconds=0) as store, pytest.raises(TransientError) as raised:
            store.set_cursor("c", "2")
        assert raised.value.code == "SQLITE_BUSY" and raised.value.system == "state"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with SqliteStateStore(path) as store:
        assert store.get_cursor("c") == "1"


def test_launcher_names_the_install_script_when_azurite_is_missing(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(azurite_launcher, "AZURITE_TABLE_BIN", tmp_path / "missing" / "azurite-table")
    with pytest.raises(azurite_launcher.AzuriteError, match="scripts/install-azurite.sh"):
        azurite_launcher.run_azurite()


def test_sqlite_database_from_an_older_version_gains_the_new_link_fields(tmp_path) -> None:
    import sqlite3

    from shared.adapters.state_sqlite import SqliteStateStore

    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:  # the links table as it was before permission_sets existed
        db.execute("CREATE TABLE links (entra_id TEXT, salesforce_id TEXT, applied_hash TEXT, pending_email TEXT, "
                   "last_outcome TEXT, last_error_code TEXT, updated_at TEXT, PRIMARY KEY (entra_id))")
        db.execute("INSERT INTO links (entra_id, salesforce_id, last_outcome) VALUES ('e1', '005000000000001AAA', 'create')")
    with SqliteStateStore(path) as store:
        assert store.get_link("e1") == UserLink("e1", "005000000000001AAA", last_outcome="create")
        store.put_link(UserLink("e1", "005000000000001AAA", permission_sets=(("PermissionSet:A", "0Pa1"),)))
        assert store.get_link("e1").permission_sets == (("PermissionSet:A", "0Pa1"),)
