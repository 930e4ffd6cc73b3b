"""The login factories run simple-salesforce's own OAuth flows (JWT bearer, client credentials) against
the emulator's /services/oauth2/token, then call the REST API with the session they obtained."""
from __future__ import annotations

from functools import partial
from typing import Any, Iterator
from urllib.parse import urlsplit

import pytest
import requests
import trustme
from requests.adapters import HTTPAdapter

from emulators.salesforce import EmulatedOrg, EmulatorHandle, run_salesforce_emulator
from shared.adapters.salesforce import SalesforceRestOrg
from shared.adapters.salesforce_client import client_credentials_client, jwt_bearer_client
from shared.core.errors import ConfigurationError, PermanentError

INTEGRATION_USER = "integration@contoso.com"


class ToEmulator(HTTPAdapter):
    """simple-salesforce builds login URLs as https://{domain}.salesforce.com and nothing else; this
    transport sends those requests to the emulator instead (same path, same TLS verification)."""

    def __init__(self, emulator_url: str) -> None:
        super().__init__()
        self.emulator_url = emulator_url

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        parts = urlsplit(request.url or "")
        request.url = self.emulator_url + parts.path + (f"?{parts.query}" if parts.query else "")
        return super().send(request, **kwargs)


@pytest.fixture(scope="module")
def signing() -> trustme.LeafCert:
    return trustme.CA().issue_cert("integration.contoso.com", key_type=trustme.KeyType.RSA)


@pytest.fixture
def emulator(signing: trustme.LeafCert) -> Iterator[EmulatorHandle]:
    org = EmulatedOrg()
    org.create_user(
        {"Username": INTEGRATION_USER, "LastName": "Integration", "Email": INTEGRATION_USER, "Alias": "integ",
         "TimeZoneSidKey": "GMT", "LocaleSidKey": "en_US", "EmailEncodingKey": "UTF-8", "LanguageLocaleKey": "en_US",
         "ProfileId": org.profile_id("System Administrator")}
    )
    org.register_connected_app("jwt-app", certificate_pem=signing.cert_chain_pems[0].bytes().decode())
    org.register_connected_app("cc-app", consumer_secret="s3cret")
    with run_salesforce_emulator(org) as handle:
        yield handle


def login_session(emulator: EmulatorHandle, *login_hosts: str) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = emulator.ca_path
    for host in login_hosts:
        session.mount(f"https://{host}/", ToEmulator(emulator.instance_url))
    return session


async def test_jwt_bearer_logs_in_and_logs_in_again_when_the_session_expires(
    emulator: EmulatorHandle, signing: trustme.LeafCert
) -> None:
    connect = partial(
        jwt_bearer_client, "jwt-app", INTEGRATION_USER, signing.private_key_pem.bytes().decode(), "login",
        session=login_session(emulator, "login.salesforce.com"),
    )
    org = SalesforceRestOrg(connect)

    assert "System Administrator" in await org.profile_ids()
    emulator.org.expire_session()
    assert len(await org.find_users(["Username"], usernames=[INTEGRATION_USER])) == 1

    # simple-salesforce re-logged in by itself after the 401; logins are not counted as API calls.
    assert emulator.org.calls.by_kind == {"query": 3}
    assert org.calls.total == 3


@pytest.mark.filterwarnings("ignore::UserWarning:simple_salesforce.login")  # simple-salesforce hint on the refusal
async def test_jwt_signed_by_another_key_or_for_an_unknown_user_is_refused(
    emulator: EmulatorHandle, signing: trustme.LeafCert
) -> None:
    other_key = trustme.CA().issue_cert("x", key_type=trustme.KeyType.RSA).private_key_pem.bytes().decode()
    session = login_session(emulator, "login.salesforce.com")
    attempts = [
        partial(jwt_bearer_client, "jwt-app", INTEGRATION_USER, other_key, session=session),
        partial(jwt_bearer_client, "jwt-app", "nobody@contoso.com", signing.private_key_pem.bytes().decode(), session=session),
    ]
    for connect in attempts:
        with pytest.raises(PermanentError) as caught:
            await SalesforceRestOrg(connect).profile_ids()
        assert caught.value.code == "INVALID_AUTH"
    assert emulator.org.calls.total == 0
    with pytest.raises(ConfigurationError):
        jwt_bearer_client("jwt-app", INTEGRATION_USER, "not a PEM key", session=session)


async def test_client_credentials_on_my_domain(emulator: EmulatorHandle) -> None:
    session = login_session(emulator, "contoso.my.salesforce.com")
    good = SalesforceRestOrg(partial(client_credentials_client, "cc-app", "s3cret", "contoso.my", session=session))
    bad = SalesforceRestOrg(partial(client_credentials_client, "cc-app", "wrong", "contoso.my", session=session))

    assert "Standard User" in await good.profile_ids()
    with pytest.raises(PermanentError) as caught:
        await bad.profile_ids()
    assert caught.value.code == "INVALID_AUTH"
