"""A burst of change notifications at the webhook over real HTTP (the CI size of
`python -m benchmarks.notification_burst --provision-while-firing`): every post answered 202, every
notified user queued, the queue drained through provision_user (running while the burst arrives, as
on one Function App instance), every changed user written exactly once, nobody else written, nothing
lost. Response times are the benchmark's to report, not asserted here."""
from __future__ import annotations

from benchmarks.notification_burst import run_burst
from benchmarks.webhook_stack import provisioned_webhook_stack

NOTIFICATIONS = 400


async def test_a_burst_is_accepted_queued_and_drained_without_duplicate_writes():
    async with provisioned_webhook_stack(users=60, idle_seconds=0.4) as running:
        figures = await run_burst(running, NOTIFICATIONS, concurrency=16, provision_while_firing=True)

    assert figures["notifications"] == NOTIFICATIONS
    assert figures["posts"] > 1
    assert figures["statuses"] == {"202": figures["posts"]}  # every post accepted at the first attempt
    assert figures["posts_not_accepted"] == 0
    # several notifications per user, some of them in one post: at least one message per notified
    # user, fewer messages than notifications
    assert figures["queued_users"] == figures["notified_users"] > 0
    assert figures["notified_users"] <= figures["queued_messages"] < NOTIFICATIONS
    assert figures["changed_users"] > 0 and figures["out_of_scope_users"] > 0
    assert figures["invocations"] >= figures["queued_messages"]
    assert figures["reconciled"] == figures["changed_users"]
    assert figures["salesforce_record_writes"] == figures["changed_users"]
    assert figures["duplicate_writes"] == 0
    assert figures["unexpected_writes"] == 0
    assert figures["lost"] == 0
    assert figures["dead_lettered"] == 0
    assert figures["queue_left"] == 0
