"""Service Bus trigger on the queue's dead-letter queue: one digest email per batch of failures.

Raising when the mail is not accepted leaves every message of the batch in the dead-letter queue."""
import azure.functions as func

from shared.bootstrap import current_container
from shared.services.notify_failures import DeadLetter

bp = func.Blueprint()


@bp.function_name("notify_failures")
@bp.service_bus_queue_trigger(
    arg_name="messages",
    queue_name="%SERVICEBUS_QUEUE_NAME%/$deadletterqueue",
    connection="ServiceBusConnection",
    cardinality=func.Cardinality.MANY,
)
async def notify_failures(messages: list[func.ServiceBusMessage]) -> None:
    letters = [
        DeadLetter(
            message_id=m.message_id or "",
            body=m.get_body(),
            dead_letter_reason=m.dead_letter_reason,
            dead_letter_description=m.dead_letter_error_description,
            delivery_count=m.delivery_count,
            enqueued_at=m.enqueued_time_utc,
        )
        for m in messages
    ]
    await current_container().notifier.notify(letters)
