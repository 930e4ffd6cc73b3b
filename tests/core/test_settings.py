import pytest

from shared.core.errors import ConfigurationError
from shared.settings import load_settings

LOCAL = dict(
    SALESFORCE_SERVICE_PRINCIPAL_ID="sp", NOTIFY_SENDER="a@contoso.com", NOTIFY_RECIPIENTS="b@contoso.com",
    SALESFORCE_AUTH_MODE="access_token", SALESFORCE_INSTANCE_URL="https://127.0.0.1:1",
    SALESFORCE_ACCESS_TOKEN="s3cret-token", STATE_SQLITE_PATH=":memory:", SERVICEBUS_CONNECTION_STRING="Endpoint=sb://x",
)


def test_valid_local_settings_keep_secrets_out_of_their_repr():
    settings = load_settings(**LOCAL)
    assert settings.SALESFORCE_ACCESS_TOKEN.get_secret_value() == "s3cret-token"
    assert "s3cret-token" not in repr(settings)
    assert settings.notify_recipients == ("b@contoso.com",)


def test_a_bad_value_is_named_by_its_setting_and_secrets_are_not_echoed(monkeypatch):
    for name in LOCAL:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError) as err:
        load_settings(SALESFORCE_PASSWORD="hunter2-secret", SALESFORCE_AUTH_MODE="password", RETRY_MAX_ATTEMPTS=99)
    text = str(err.value)
    for name in ("RETRY_MAX_ATTEMPTS",):
        assert name in text
    assert "hunter2-secret" not in text


def test_required_settings_and_cross_checks_together(monkeypatch):
    for name in LOCAL:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError) as err:
        load_settings(SALESFORCE_AUTH_MODE="client_credentials", GRAPH_DEV_TOKEN="t", GRAPH_BASE_URL="https://graph.microsoft.com/v1.0")
    text = str(err.value)
    for needle in ("SALESFORCE_SERVICE_PRINCIPAL_ID is required", "NOTIFY_SENDER is required", "NOTIFY_RECIPIENTS",
                   "SALESFORCE_CONSUMER_SECRET", "My Domain", "GRAPH_DEV_TOKEN is for the local emulator only",
                   "ServiceBusConnection", "STATE_TABLE_ENDPOINT"):
        assert needle in text
