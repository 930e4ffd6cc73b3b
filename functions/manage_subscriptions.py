"""Timer: keep the Graph change-notification subscriptions alive (create, renew, recreate)."""
import logging

import azure.functions as func

from shared.bootstrap import current_container

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("manage_subscriptions")
@bp.timer_trigger(arg_name="timer", schedule="%SUBSCRIPTION_SCHEDULE%", run_on_startup=False, use_monitor=True)
async def manage_subscriptions(timer: func.TimerRequest) -> None:
    manager = current_container().subscriptions
    if manager is None:
        log.info("change notifications are not configured (NOTIFICATION_URL): the detect timer alone finds changes")
        return
    for outcome in await manager.ensure():
        log.info("subscription for %s: %s (%s)", outcome.resource, outcome.action, outcome.subscription_id)
