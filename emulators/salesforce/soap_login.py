"""POST /services/Soap/u/{version}: the SOAP login() call, enough for simple-salesforce's
username + password + security token login (the built-in connector's way). Salesforce expects the
security token appended to the password; a wrong pair is a SOAP fault INVALID_LOGIN (HTTP 500).
login() is unavailable from API v65.0 on, so the emulator refuses those versions too."""
from __future__ import annotations

from xml.etree import ElementTree
from xml.sax.saxutils import escape

from aiohttp import web

from .org import EmulatedOrg

_URN = "{urn:partner.soap.sforce.com}"
LAST_SOAP_LOGIN_VERSION = 64.0


def _fault(code: str, message: str) -> web.Response:
    body = f"""<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:sf="urn:fault.partner.soap.sforce.com">
<soapenv:Body><soapenv:Fault><faultcode>sf:{code}</faultcode><faultstring>{escape(message)}</faultstring>
<detail><sf:LoginFault><sf:exceptionCode>{code}</sf:exceptionCode><sf:exceptionMessage>{escape(message)}</sf:exceptionMessage>
</sf:LoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"""
    return web.Response(status=500, text=body, content_type="text/xml")


async def login(request: web.Request, org: EmulatedOrg) -> web.Response:
    version = request.match_info["version"]
    try:
        if float(version) > LAST_SOAP_LOGIN_VERSION:
            return _fault("UNSUPPORTED_API_VERSION", f"login() is not available in API version {version}")
        envelope = ElementTree.fromstring(await request.read())
    except (ValueError, ElementTree.ParseError):
        return _fault("INVALID_LOGIN", "Invalid username, password, security token; or user locked out.")
    username = envelope.findtext(f".//{_URN}username") or ""
    password = envelope.findtext(f".//{_URN}password") or ""
    if not org.password_login_ok(username, password):
        return _fault("INVALID_LOGIN", "Invalid username, password, security token; or user locked out.")
    server_url = f"https://{request.host}/services/Soap/u/{version}/{org.org_id}"
    body = f"""<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com">
<soapenv:Body><loginResponse><result><metadataServerUrl>{server_url}</metadataServerUrl><passwordExpired>false</passwordExpired>
<sandbox>false</sandbox><serverUrl>{server_url}</serverUrl><sessionId>{org.issue_session()}</sessionId>
<userId>{org.user_id_of(username)}</userId></result></loginResponse></soapenv:Body></soapenv:Envelope>"""
    return web.Response(text=body, content_type="text/xml")
