"""The login factories run simple-salesforce's own login flows (JWT bearer, client credentials, SOAP
username + password + security token) against the emulator, then call the REST API with the session
they obtained; the login host each one uses is checked for production, sandbox, My Domain and
Government Cloud, and the composition root picks the factory each SALESFORCE_AUTH_MODE names."""
from __future__ import annotations

import logging
from functools import partial
from typing import Any, Iterator
from urllib.parse import parse_qs

import jwt
import pytest
import requests
import trustme

from emulators.salesforce import EmulatedOrg, EmulatorHandle, run_salesforce_emulator
from emulators.salesforce.login_routing import login_session
from shared.adapters.salesforce import SalesforceRestOrg
from shared.adapters.salesforce_client import (
    API_VERSION,
    client_credentials_client,
    dev_token_client,
    jwt_bearer_client,
    password_client,
)
from shared.bootstrap import salesforce_connector
from shared.core.errors import ConfigurationError, PermanentError
from shared.settings import load_settings

INTEGRATION_USER = "integration@contoso.com"


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


# Where each kind of org logs in: (SALESFORCE_DOMAIN, login host, the JWT audience Salesforce accepts).
LOGIN_HOSTS = [
    pytest.param("login", "login.salesforce.com", "https://login.salesforce.com", id="production"),
    pytest.param("test", "test.salesforce.com", "https://test.salesforce.com", id="sandbox"),
    pytest.param("contoso.my", "contoso.my.salesforce.com", "https://login.salesforce.com", id="my-domain"),
    pytest.param("contoso--uat.sandbox.my", "contoso--uat.sandbox.my.salesforce.com", "https://test.salesforce.com",
                 id="sandbox-my-domain"),
    # Government Cloud orgs log in at their My Domain (the tutorial's Tenant URL, https://<instance>.my.salesforce.com).
    pytest.param("agency.my", "agency.my.salesforce.com", "https://login.salesforce.com", id="government-cloud"),
]


@pytest.mark.parametrize("domain, host, audience", LOGIN_HOSTS)
def test_jwt_bearer_asks_the_right_login_host_with_the_audience_salesforce_accepts(
    emulator: EmulatorHandle, signing: trustme.LeafCert, domain: str, host: str, audience: str
) -> None:
    seen: list[requests.PreparedRequest] = []
    client = jwt_bearer_client("jwt-app", INTEGRATION_USER, signing.private_key_pem.bytes().decode(), domain,
                               session=login_session(emulator, host, seen=seen))
    assert client.auth_type == "jwt-bearer"
    assert [request.url for request in seen] == [f"https://{host}/services/oauth2/token"]
    assertion = parse_qs(str(seen[0].body))["assertion"][0]
    claims = jwt.decode(assertion, options={"verify_signature": False})
    assert claims["aud"] == audience and claims["iss"] == "jwt-app" and claims["sub"] == INTEGRATION_USER
    assert client.query("SELECT Id FROM Profile")["totalSize"] == 4


@pytest.mark.parametrize("domain, host, audience", LOGIN_HOSTS)
def test_password_and_security_token_log_in_by_soap_and_warn_that_salesforce_retires_it(
    emulator: EmulatorHandle, caplog: pytest.LogCaptureFixture, domain: str, host: str, audience: str
) -> None:
    emulator.org.set_password(INTEGRATION_USER, "pa55word", "T0KEN")
    seen: list[requests.PreparedRequest] = []
    with caplog.at_level(logging.WARNING, logger="shared.adapters.salesforce_client"):
        client = password_client(INTEGRATION_USER, "pa55word", "T0KEN", domain,
                                 session=login_session(emulator, host, seen=seen))
    assert client.auth_type == "password" and client.session_id
    assert [request.url for request in seen] == [f"https://{host}/services/Soap/u/{API_VERSION}"]
    assert any("retiring" in record.getMessage() for record in caplog.records)
    assert "pa55word" not in caplog.text and "T0KEN" not in caplog.text
    assert client.query("SELECT Id FROM Profile")["totalSize"] == 4


async def test_a_wrong_password_or_security_token_is_refused(emulator: EmulatorHandle) -> None:
    emulator.org.set_password(INTEGRATION_USER, "pa55word", "T0KEN")
    session = login_session(emulator, "login.salesforce.com")
    for password, token in (("pa55word", "wrong"), ("wrong", "T0KEN")):
        with pytest.raises(PermanentError) as caught:
            await SalesforceRestOrg(partial(password_client, INTEGRATION_USER, password, token, session=session)).profile_ids()
        assert caught.value.code == "INVALID_AUTH"
    assert emulator.org.calls.total == 0


@pytest.mark.parametrize("domain", ["login", "test", ""])
def test_client_credentials_need_a_my_domain(domain: str) -> None:
    with pytest.raises(ConfigurationError, match="My Domain"):
        client_credentials_client("cc-app", "s3cret", domain)


def test_client_credentials_ask_the_my_domain_host(emulator: EmulatorHandle) -> None:
    seen: list[requests.PreparedRequest] = []
    client = client_credentials_client("cc-app", "s3cret", "agency.my",
                                       session=login_session(emulator, "agency.my.salesforce.com", seen=seen))
    assert client.auth_type == "client-credentials"
    assert [request.url for request in seen] == ["https://agency.my.salesforce.com/services/oauth2/token"]


SECRETS = {"SALESFORCE_CONSUMER_KEY": "key", "SALESFORCE_USERNAME": INTEGRATION_USER,
           "SALESFORCE_PRIVATE_KEY": "pem", "SALESFORCE_CONSUMER_SECRET": "secret",
           "SALESFORCE_PASSWORD": "pw", "SALESFORCE_SECURITY_TOKEN": "tok",
           "SALESFORCE_ACCESS_TOKEN": "dev", "SALESFORCE_INSTANCE_URL": "https://127.0.0.1:8443"}


@pytest.mark.parametrize("mode, factory, args", [
    ("jwt", jwt_bearer_client, ("key", INTEGRATION_USER, "pem", "contoso.my")),
    ("client_credentials", client_credentials_client, ("key", "secret", "contoso.my")),
    ("password", password_client, (INTEGRATION_USER, "pw", "tok", "contoso.my")),
    ("access_token", dev_token_client, ("https://127.0.0.1:8443", "dev", None)),
])
def test_each_auth_mode_setting_picks_its_login_factory(mode: str, factory: Any, args: tuple) -> None:
    settings = load_settings(
        SALESFORCE_AUTH_MODE=mode, SALESFORCE_DOMAIN="contoso.my", SALESFORCE_SERVICE_PRINCIPAL_ID="sp",
        NOTIFY_SENDER="a@contoso.com", NOTIFY_RECIPIENTS="b@contoso.com", STATE_SQLITE_PATH=":memory:",
        SERVICEBUS_CONNECTION_STRING="Endpoint=sb://localhost/", **SECRETS)
    connect = salesforce_connector(settings)
    assert connect.func is factory and connect.args == args


def test_the_access_token_mode_builds_a_direct_client_for_a_loopback_instance_only() -> None:
    client = dev_token_client("https://127.0.0.1:8443", "dev")
    assert client.auth_type == "direct" and client.sf_instance == "127.0.0.1:8443" and client.session_id == "dev"
    with pytest.raises(ConfigurationError, match="loopback"):
        dev_token_client("https://agency.my.salesforce.com", "dev")
