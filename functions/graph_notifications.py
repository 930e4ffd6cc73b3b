"""HTTP webhook for Graph change notifications on users: handshake, then validate and enqueue."""
import logging

import azure.functions as func

from shared.bootstrap import current_container
from shared.services.change_notifications import MalformedNotification

bp = func.Blueprint()
log = logging.getLogger(__name__)

MAX_VALIDATION_TOKEN = 1024


@bp.function_name("graph_notifications")
@bp.route(route="graph/notifications", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def graph_notifications(req: func.HttpRequest) -> func.HttpResponse:
    token = req.params.get("validationToken")
    if token is not None:
        # Graph's subscription handshake: echo the decoded token as plain text within 10 s. text/plain
        # keeps any markup in it inert.
        if not token or len(token) > MAX_VALIDATION_TOKEN:
            return func.HttpResponse("invalid validationToken", status_code=400, mimetype="text/plain")
        return func.HttpResponse(token, status_code=200, mimetype="text/plain")
    try:
        result = await current_container().notifications.accept(req.get_body())
    except MalformedNotification as exc:
        log.warning("rejected a change-notification request: %s", exc)
        return func.HttpResponse(str(exc), status_code=400, mimetype="text/plain")
    log.info("change notifications: %d accepted, %d rejected, %d users enqueued", result.accepted, result.rejected, result.enqueued)
    return func.HttpResponse(status_code=202)
