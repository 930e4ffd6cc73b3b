"""Graph's subscription validation handshake, shared by the change and lifecycle webhooks."""
import azure.functions as func

MAX_VALIDATION_TOKEN = 1024


def validation_echo(token: str) -> func.HttpResponse:
    """Echo the decoded token as text/plain within Graph's 10 s (text/plain keeps any markup in it
    inert), or 400 for an empty or oversized one."""
    if not 0 < len(token) <= MAX_VALIDATION_TOKEN:
        return func.HttpResponse("invalid validationToken", status_code=400, mimetype="text/plain")
    return func.HttpResponse(token, status_code=200, mimetype="text/plain")
