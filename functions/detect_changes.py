"""Timer: find changed users (assignments + users/delta) and enqueue them, then the users whose
escrow retry is due."""
import logging

import azure.functions as func

from shared.bootstrap import current_container

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("detect_changes")
@bp.timer_trigger(arg_name="timer", schedule="%DETECT_SCHEDULE%", run_on_startup=False, use_monitor=True)
async def detect_changes(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.warning("detect cycle is running late")
    container = current_container()
    await container.detector.run_cycle()
    await container.escrow.enqueue_due()
