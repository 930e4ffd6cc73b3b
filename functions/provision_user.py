"""Service Bus queue trigger: reconcile one user.

Completing the message is the host's job: returning completes it; raising abandons it. A message that
must be dead-lettered (MessageFailed) keeps raising on every delivery without doing work, so the
queue's max delivery count moves it to the dead-letter queue at once, and its original reason waits
in the state store for the dead-letter handler."""
import azure.functions as func

from shared.bootstrap import current_container

bp = func.Blueprint()


@bp.function_name("provision_user")
@bp.service_bus_queue_trigger(arg_name="message", queue_name="%SERVICEBUS_QUEUE_NAME%", connection="ServiceBusConnection")
async def provision_user(message: func.ServiceBusMessage) -> None:
    await current_container().provisioner.handle_message(message.get_body(), message.message_id or "")
