"""HTTP webhook for Graph change notifications on users: handshake, then validate and enqueue."""
import logging

import azure.functions as func

from shared.bootstrap import current_container
from shared.services.change_notifications import EnqueueFailed, MalformedNotification

from .graph_handshake import validation_echo

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("graph_notifications")
@bp.route(route="graph/notifications", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def graph_notifications(req: func.HttpRequest) -> func.HttpResponse:
    token = req.params.get("validationToken")
    if token is not None:
        return validation_echo(token)
    try:
        result = await current_container().notifications.accept(req.get_body())
    except MalformedNotification as exc:
        log.warning("rejected a change-notification request: %s", exc)
        return func.HttpResponse(str(exc), status_code=400, mimetype="text/plain")
    except EnqueueFailed as exc:  # Graph delivers again after a 5xx
        log.warning("change notifications not enqueued, answering 503: %s", exc)
        return func.HttpResponse(status_code=503)
    log.info("change notifications: %d accepted, %d rejected, %d users enqueued", result.accepted, result.rejected, result.enqueued)
    return func.HttpResponse(status_code=202)
