"""HTTP: provision one user now and report each step (connection, import, scope, match, action).

POST /api/provision/{entraId} with a function key. 200 with the report once the user was looked at
(whatever the outcome: the steps say it), 400 for an id that is not an Entra object id, 502 when Graph
or Salesforce cannot be reached."""
import json

import azure.functions as func

from shared.bootstrap import current_container
from shared.core.messages import is_object_id

bp = func.Blueprint()


def _json(body: dict, status_code: int) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, ensure_ascii=False), status_code=status_code, mimetype="application/json")


@bp.function_name("provision_on_demand")
@bp.route(route="provision/{entra_id}", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def provision_on_demand(req: func.HttpRequest) -> func.HttpResponse:
    entra_id = req.route_params.get("entra_id", "")
    if not is_object_id(entra_id):
        return _json({"error": "the path must end in the user's Entra object id (a GUID), "
                               "e.g. /api/provision/00000000-0000-0000-0000-000000000000"}, 400)
    report = await current_container().on_demand.provision(entra_id)
    return _json(report.to_json(), 200 if report.connected else 502)
