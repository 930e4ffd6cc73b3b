"""The quarantine's counting rules and the escrow's schedule, on plain values."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from shared.core.errors import PermanentError, SessionExpired, TransientError, salesforce_error
from shared.core.escrow import OFFSETS, elapsed_seconds, expires_at, next_retry_at, step_seconds
from shared.core.messages import ReconcileMessage
from shared.core.quarantine import backoff_seconds, breached, classify, count_outcomes

HOUR = 3600.0
SIX_HOURS = 6 * HOUR
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=timezone.utc)


def test_successes_count_and_skips_do_not():
    assert classify("create", None) == "success"
    assert classify("noop", None) == "success"  # matched in Salesforce: a query answered
    assert classify("skip", None) == "ignored"  # nothing asked of Salesforce
    assert classify(None, None) == "ignored"


@pytest.mark.parametrize("error", [
    salesforce_error(503, "SERVER_UNAVAILABLE", "down"),
    salesforce_error(403, "REQUEST_LIMIT_EXCEEDED", "daily limit"),
    salesforce_error(None, "Timeout", "no answer"),
    salesforce_error(403, "INSUFFICIENT_ACCESS", "the integration user lost Manage Users"),
])
def test_salesforce_failures_about_salesforce_count(error):
    assert classify("update", error) == "failure"


@pytest.mark.parametrize("error", [
    salesforce_error(None, "INVALID_AUTH", "Salesforce login failed"),
    SessionExpired("INVALID_SESSION_ID", "Session expired or invalid", system="salesforce"),
    salesforce_error(401, None, "unauthorised"),
])
def test_rejected_credentials_are_auth_failures(error):
    assert classify(None, error) == "auth"


@pytest.mark.parametrize("error", [
    salesforce_error(None, "DUPLICATE_USERNAME", "taken"),
    salesforce_error(None, "LICENSE_LIMIT_EXCEEDED", "no licence"),
    PermanentError("REQUIRED_FIELD_MISSING", "Email", system="salesforce", fields=["Email"]),
    salesforce_error(None, "SOME_NEW_FIELD_ERROR", "bad value", fields=["Department"]),  # about a field of one user
    TransientError("TooManyRequests", "Graph throttled", system="graph"),
    TransientError("UserBusy", "another worker", system="lease"),
    PermanentError("ProfileNotFound", "no such profile", system="mapping"),
])
def test_one_users_data_and_other_systems_are_not_counted(error):
    assert classify("create", error) == "ignored"


def test_counting_a_batch_counts_a_failed_call_once_and_names_any_auth_failure():
    down = salesforce_error(503, "SERVER_UNAVAILABLE", "down")
    taken = salesforce_error(None, "DUPLICATE_USERNAME", "taken")
    counts = count_outcomes([("update", None), ("create", down), ("create", down), ("create", taken), ("skip", None),
                             ("update", salesforce_error(None, "Timeout", "slow"))])
    assert (counts.succeeded, counts.failed, counts.top_code, counts.auth_code) == (1, 2, "SERVER_UNAVAILABLE", None)
    each = [salesforce_error(None, "UNABLE_TO_LOCK_ROW", "busy") for _ in range(3)]  # per-record errors
    assert count_outcomes([("update", e) for e in each]).failed == 3
    auth = count_outcomes([("update", SessionExpired("INVALID_SESSION_ID", "x", system="salesforce"))])
    assert auth.auth_code == "INVALID_SESSION_ID" and auth.failed == 1


def test_the_ratio_needs_enough_operations_and_more_than_the_share():
    assert not breached(1, 9, 0.4, 50)  # 90% failed, but only 10 operations
    assert breached(29, 21, 0.4, 50)  # 42% of 50
    assert not breached(30, 20, 0.4, 50)  # exactly 40% is not more than 40%
    assert not breached(0, 500, 0, 50)  # ratio 0: off


def test_backoff_doubles_up_to_the_maximum_with_jitter_around_it():
    assert [backoff_seconds(n, 60, 3600, jitter=False) for n in range(8)] == [60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert all(48 <= backoff_seconds(0, 60, 3600) <= 72 for _ in range(50))
    assert backoff_seconds(1000, 60, 3600, jitter=False) == 3600  # no overflow for a long quarantine


def test_escrow_retries_at_6_12_24_hours_then_daily_for_28_days():
    hours = [offset * 6 for offset in OFFSETS]
    assert hours[:5] == [6, 12, 24, 48, 72] and hours[-1] == 28 * 24
    assert all(b - a == 24 for a, b in zip(hours[3:], hours[4:]))
    assert next_retry_at(T0, T0, SIX_HOURS) == T0 + timedelta(hours=6)
    assert next_retry_at(T0, T0 + timedelta(hours=6), SIX_HOURS) == T0 + timedelta(hours=12)  # strictly after
    assert next_retry_at(T0, T0 + timedelta(hours=13), SIX_HOURS) == T0 + timedelta(hours=24)
    assert next_retry_at(T0, T0 + timedelta(days=3, hours=1), SIX_HOURS) == T0 + timedelta(days=4)
    assert next_retry_at(T0, T0 + timedelta(days=28), SIX_HOURS) is None
    assert expires_at(T0, SIX_HOURS) == T0 + timedelta(days=29)


def test_the_schedule_scales_with_its_unit():
    assert next_retry_at(T0, T0 + timedelta(seconds=2.5), 1.0) == T0 + timedelta(seconds=4)


def test_parked_licence_retries_land_on_the_escrow_schedule():
    steps = [step_seconds(n, SIX_HOURS) / HOUR for n in range(7)]
    assert steps == [6, 6, 12, 24, 24, 24, 24]
    assert [elapsed_seconds(n, SIX_HOURS) / HOUR for n in range(5)] == [0, 6, 12, 24, 48]
    assert step_seconds(500, SIX_HOURS) / HOUR == 24  # beyond the schedule: daily


def test_a_deferred_message_keeps_its_attempts_and_gets_its_own_id():
    message = ReconcileMessage.new("0f8fad5b-d9cb-469f-a165-70867728950e", "delta", "cursor-1")
    retried = message.retry()
    deferred = retried.defer().defer()
    assert (deferred.attempt, deferred.deferrals) == (1, 2)
    assert deferred.message_id == message.message_id + "/retry1/deferred2"
    assert deferred.retry().message_id == message.message_id + "/retry2/deferred2"
    parsed = ReconcileMessage.from_json(deferred.to_json(), deferred.message_id)
    assert (parsed.attempt, parsed.deferrals) == (1, 2)
    assert "deferrals" not in message.to_json()  # a message never deferred looks as before
