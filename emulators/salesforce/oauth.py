"""POST /services/oauth2/token: the client credentials and JWT bearer flows, enough for
simple-salesforce's own login code to obtain a session from the emulator."""
from __future__ import annotations

import base64
import hmac
import time

import jwt
from aiohttp import web
from cryptography.x509 import load_pem_x509_certificate

from .org import ConnectedApp, EmulatedOrg

AUDIENCES = ["https://login.salesforce.com", "https://test.salesforce.com"]


def _refused(error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=400)


def _public_key(app: ConnectedApp) -> str | object:
    pem = app.certificate_pem or ""
    return load_pem_x509_certificate(pem.encode()).public_key() if "CERTIFICATE" in pem else pem


def _client_credentials(org: EmulatedOrg, authorization: str) -> web.Response | None:
    scheme, _, encoded = authorization.partition(" ")
    try:
        key, _, secret = base64.b64decode(encoded).decode().partition(":")
    except ValueError:
        key = secret = ""
    app = org.connected_apps.get(key)
    if scheme.lower() != "basic" or app is None:
        return _refused("invalid_client_id", "client identifier invalid")
    if app.consumer_secret is None or not hmac.compare_digest(secret, app.consumer_secret):
        return _refused("invalid_client", "invalid client credentials")
    return None


def _jwt_bearer(org: EmulatedOrg, assertion: str) -> web.Response | None:
    try:
        issuer = jwt.decode(assertion, options={"verify_signature": False}).get("iss", "")
    except jwt.PyJWTError:
        return _refused("invalid_grant", "invalid assertion")
    app = org.connected_apps.get(issuer)
    if app is None or app.certificate_pem is None:
        return _refused("invalid_client_id", "client identifier invalid")
    try:
        claims = jwt.decode(assertion, _public_key(app), algorithms=["RS256"], audience=AUDIENCES)  # type: ignore[arg-type]
    except jwt.PyJWTError:
        return _refused("invalid_grant", "invalid assertion")
    if not org.active_username(str(claims.get("sub", ""))):
        return _refused("invalid_grant", "user hasn't approved this consumer")
    return None


async def token(request: web.Request, org: EmulatedOrg) -> web.Response:
    form = await request.post()
    grant = form.get("grant_type")
    if grant == "client_credentials":
        refused = _client_credentials(org, request.headers.get("Authorization", ""))
    elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
        refused = _jwt_bearer(org, str(form.get("assertion", "")))
    else:
        refused = _refused("unsupported_grant_type", "grant type not supported")
    if refused is not None:
        return refused
    return web.json_response(
        {
            "access_token": org.issue_session(),
            "instance_url": f"https://{request.host}",
            "token_type": "Bearer",
            "issued_at": str(int(time.time() * 1000)),
        }
    )
