"""Graph's subscription validation handshake, shared by the change and lifecycle webhooks."""
import azure.functions as func

MAX_VALIDATION_TOKEN = 1024
_INERT = {"X-Content-Type-Options": "nosniff"}


def validation_echo(token: str) -> func.HttpResponse:
    """Echo the decoded token as text/plain within Graph's 10 s (text/plain, and nosniff so no browser
    guesses otherwise, keep any markup in it inert), or 400 for an empty or oversized one."""
    if not 0 < len(token) <= MAX_VALIDATION_TOKEN:
        return func.HttpResponse("invalid validationToken", status_code=400, mimetype="text/plain", headers=_INERT)
    return func.HttpResponse(token, status_code=200, mimetype="text/plain", headers=_INERT)
