"""HTTP webhook for Graph lifecycle notifications (reauthorizationRequired, subscriptionRemoved)."""
import logging

import azure.functions as func

from shared.bootstrap import current_container

from .graph_handshake import validation_echo
from shared.services.change_notifications import MalformedNotification

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("graph_lifecycle")
@bp.route(route="graph/lifecycle", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def graph_lifecycle(req: func.HttpRequest) -> func.HttpResponse:
    if "validationToken" in req.params:
        # Graph validates lifecycleNotificationUrl as it does notificationUrl: echo the decoded token.
        return validation_echo(req.params["validationToken"])
    manager = current_container().subscriptions
    if manager is None:
        log.warning("lifecycle notification received but change notifications are not configured")
        return func.HttpResponse(status_code=202)
    try:
        outcomes = await manager.handle_lifecycle(req.get_body())
    except MalformedNotification as exc:
        log.warning("rejected a lifecycle-notification request: %s", exc)
        return func.HttpResponse(str(exc), status_code=400, mimetype="text/plain")
    for outcome in outcomes:
        log.info("lifecycle notification for subscription %s: %s", outcome.subscription_id, outcome.action)
    return func.HttpResponse(status_code=202)

