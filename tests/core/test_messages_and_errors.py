import json
from datetime import datetime, timezone

import pytest

from shared.core.errors import InvalidMessage, PermanentError, SessionExpired, TransientError, graph_error, salesforce_error
from shared.core.messages import MAX_MESSAGE_BYTES, ReconcileMessage

UID = "0B1C2D3E-0000-4000-8000-000000000001"


def test_message_round_trip_and_stable_ids():
    a = ReconcileMessage.new(UID, "delta", "cursor-1", datetime(2026, 1, 1, tzinfo=timezone.utc))
    b = ReconcileMessage.new(UID, "delta", "cursor-1")
    assert a.message_id == b.message_id and len(a.message_id) <= 128
    assert ReconcileMessage.new(UID, "delta", "cursor-2").message_id != a.message_id
    parsed = ReconcileMessage.from_json(a.to_json(), a.message_id)
    assert parsed == a and parsed.entra_id == UID.lower()


def test_retry_increments_attempt_and_derives_a_new_id():
    a = ReconcileMessage.new(UID, "delta", "c")
    r2 = a.retry().retry()
    assert r2.attempt == 2 and r2.message_id == a.message_id + "/retry2"


@pytest.mark.parametrize(
    "body, needle",
    [
        (b"not json", "not JSON"),
        (b"[1,2]", "JSON object"),
        (b"\xff\xfe", "not JSON"),
        (json.dumps({"schemaVersion": 2, "entraId": UID, "reason": "delta", "observedAt": "2026-01-01T00:00:00"}), "schemaVersion"),
        (json.dumps({"schemaVersion": 1, "reason": "delta", "observedAt": "2026-01-01T00:00:00"}), "entraId"),
        (json.dumps({"schemaVersion": 1, "entraId": "'; DROP", "reason": "delta", "observedAt": "2026-01-01"}), "entraId"),
        (json.dumps({"schemaVersion": 1, "entraId": UID, "reason": "bogus", "observedAt": "2026-01-01"}), "reason"),
        (json.dumps({"schemaVersion": 1, "entraId": UID, "reason": "delta", "observedAt": "yesterday"}), "observedAt"),
        (json.dumps({"schemaVersion": 1, "entraId": UID, "reason": "delta", "observedAt": "2026-01-01", "attempt": -1}), "attempt"),
        (b"{" + b" " * MAX_MESSAGE_BYTES + b"}", "bytes"),
    ],
)
def test_bad_messages_get_a_clear_permanent_error(body, needle):
    with pytest.raises(InvalidMessage) as err:
        ReconcileMessage.from_json(body, "m1")
    assert needle in str(err.value)
    assert isinstance(err.value, PermanentError) and not err.value.transient


@pytest.mark.parametrize(
    "status, code, kind",
    [
        (400, "UNABLE_TO_LOCK_ROW", TransientError),
        (403, "REQUEST_LIMIT_EXCEEDED", TransientError),
        (503, None, TransientError),
        (None, "Timeout", TransientError),
        (401, "INVALID_SESSION_ID", SessionExpired),
        (400, "DUPLICATE_USERNAME", PermanentError),
        (None, "LICENSE_LIMIT_EXCEEDED", PermanentError),
        (400, "REQUIRED_FIELD_MISSING", PermanentError),
        (400, "STRING_TOO_LONG", PermanentError),
        (400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", PermanentError),
    ],
)
def test_salesforce_classification(status, code, kind):
    err = salesforce_error(status, code, "msg")
    assert type(err) is kind
    assert err.transient == (kind is not PermanentError)


def test_graph_classification_keeps_retry_after():
    throttled = graph_error(429, "TooManyRequests", "slow down", retry_after=7)
    assert throttled.transient and throttled.retry_after == 7
    assert graph_error(502, None, "bad gateway").transient
    assert not graph_error(403, "Authorization_RequestDenied", "no").transient
