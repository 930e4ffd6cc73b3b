"""Build simple-salesforce clients from plain arguments, one function per way of authenticating.

The composition root picks one and hands it to `SalesforceRestOrg` (usually with functools.partial),
which calls it again to re-authenticate when a session expires. Only `dev_token_client` talks to a
local emulator; the others use simple-salesforce's own login flows against *.salesforce.com."""
from __future__ import annotations

import logging
from urllib.parse import urlparse

import jwt
import requests
from simple_salesforce import Salesforce

from shared.core.errors import ConfigurationError
from shared.core.loopback import is_loopback_host

log = logging.getLogger(__name__)

API_VERSION = "59.0"


def _session(ca_bundle: str | None) -> requests.Session:
    """A session that trusts `ca_bundle`. trust_env is off because REQUESTS_CA_BUNDLE (set on these
    machines) would otherwise override `verify`. Verification itself always stays on."""
    session = requests.Session()
    if ca_bundle:
        session.trust_env = False
        session.verify = ca_bundle
    return session


def dev_token_client(instance_url: str, access_token: str, ca_bundle: str | None = None) -> Salesforce:
    """A static dev token against a local emulator. Refused for anything but a loopback instance_url,
    so a dev token can never be pointed at a real org."""
    host = urlparse(instance_url).hostname
    if not is_loopback_host(host):
        raise ConfigurationError(
            f"a static dev token is only accepted for a loopback instance_url (127.0.0.1/localhost), not host {host!r}"
        )
    return Salesforce(
        instance_url=instance_url, session_id=access_token, session=_session(ca_bundle), version=API_VERSION
    )


def jwt_bearer_client(
    consumer_key: str, username: str, private_key: str, domain: str = "login", *, session: requests.Session | None = None
) -> Salesforce:
    """OAuth 2.0 JWT bearer flow with the connected app's certificate key (PEM text). `domain` is the
    login host: 'login', 'test' (sandbox) or '<name>.my' (My Domain, and Government Cloud, whose
    login.salesforce.com does not serve it). The token is requested from that host, but the JWT's
    audience must be login.salesforce.com (test.salesforce.com for a sandbox), whatever the host.
    simple-salesforce logs in again by itself when the session expires. `session` (all login
    factories): proxies or a private CA."""
    audience = "test" if domain == "test" or domain.endswith(".sandbox.my") else "login"
    try:
        return Salesforce(
            username=username, consumer_key=consumer_key, privatekey=private_key, domain=audience,
            instance_url=None if domain in ("login", "test") else domain, version=API_VERSION, session=session,
        )
    except (ValueError, jwt.PyJWTError) as exc:
        raise ConfigurationError(f"the Salesforce JWT private key cannot sign RS256 tokens ({type(exc).__name__})") from None


def client_credentials_client(
    consumer_key: str, consumer_secret: str, my_domain: str, *, session: requests.Session | None = None
) -> Salesforce:
    """OAuth 2.0 client credentials flow; Salesforce only allows it on a My Domain ('<name>.my')."""
    if my_domain in ("login", "test") or not my_domain:
        raise ConfigurationError("the client credentials flow needs a My Domain such as 'contoso.my', not 'login'/'test'")
    return Salesforce(
        consumer_key=consumer_key, consumer_secret=consumer_secret, domain=my_domain, version=API_VERSION, session=session
    )


def password_client(
    username: str, password: str, security_token: str, domain: str = "login", *, session: requests.Session | None = None
) -> Salesforce:
    """SOAP login with username, password and security token (legacy)."""
    log.warning(
        "Salesforce username/password login uses SOAP login(), which Salesforce is retiring "
        "(unavailable from API v65.0, retired for older versions in Summer '27); prefer the JWT bearer flow."
    )
    return Salesforce(
        username=username, password=password, security_token=security_token, domain=domain, version=API_VERSION,
        session=session,
    )
