"""One typed, validated settings object, read from the environment (app settings in Azure,
local.settings.json / the CLI locally). Invalid settings fail at start with one error listing every
problem. Secrets are SecretStr: their values never appear in reprs or logs."""
from __future__ import annotations

import logging
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .core.errors import ConfigurationError
from .core.loopback import is_loopback_url

log = logging.getLogger(__name__)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=True)

    # Microsoft Graph (Entra ID). Endpoint from settings so national clouds and the emulator work.
    GRAPH_BASE_URL: str = "https://graph.microsoft.com/v1.0"
    AZURE_CLIENT_ID: str | None = None  # user-assigned managed identity; None: DefaultAzureCredential
    GRAPH_DEV_TOKEN: SecretStr | None = None  # emulator only; refused for non-loopback endpoints
    # Required ones are checked in _check, so one error lists every problem at once.
    SALESFORCE_SERVICE_PRINCIPAL_ID: str = ""  # object id of the Salesforce enterprise app's service principal
    # The application object profiles are imported into as app roles (object id or appId); empty: the
    # application behind SALESFORCE_SERVICE_PRINCIPAL_ID.
    SALESFORCE_APPLICATION_ID: str = ""

    # Salesforce
    SALESFORCE_AUTH_MODE: Literal["jwt", "client_credentials", "password", "access_token"] = "jwt"
    SALESFORCE_INSTANCE_URL: str | None = None
    SALESFORCE_DOMAIN: str = "login"  # login, test, or <name>.my (My Domain)
    SALESFORCE_CONSUMER_KEY: str | None = None
    SALESFORCE_CONSUMER_SECRET: SecretStr | None = None
    SALESFORCE_USERNAME: str | None = None
    SALESFORCE_PRIVATE_KEY: SecretStr | None = None
    SALESFORCE_PASSWORD: SecretStr | None = None
    SALESFORCE_SECURITY_TOKEN: SecretStr | None = None
    SALESFORCE_ACCESS_TOKEN: SecretStr | None = None
    SALESFORCE_CA_BUNDLE: str | None = None  # a local test CA (emulator); never needed in Azure
    SALESFORCE_API_VERSION: str = "59.0"
    # A Salesforce call unanswered this long counts as a transient failure (retried with backoff).
    SALESFORCE_TIMEOUT_SECONDS: float = Field(30.0, gt=0)

    # Service Bus: identity-based in Azure (…__fullyQualifiedNamespace), a connection string locally.
    SERVICEBUS_CONNECTION_STRING: SecretStr | None = Field(
        None, validation_alias=AliasChoices("ServiceBusConnection", "SERVICEBUS_CONNECTION_STRING")
    )
    SERVICEBUS_NAMESPACE: str | None = Field(
        None, validation_alias=AliasChoices("ServiceBusConnection__fullyQualifiedNamespace", "SERVICEBUS_NAMESPACE")
    )
    SERVICEBUS_QUEUE_NAME: str = "provision-users"

    # State: Table Storage in Azure (endpoint + managed identity), SQLite locally.
    STATE_TABLE_ENDPOINT: str | None = None
    STATE_TABLE_CONNECTION_STRING: SecretStr | None = None
    STATE_SQLITE_PATH: str | None = None
    STATE_TABLE_PREFIX: str = "provisioning"

    # Failure emails (Graph sendMail from a mailbox the app may send as).
    NOTIFY_SENDER: str = ""  # a mailbox the app may send as (restrict Mail.Send to it)
    NOTIFY_RECIPIENTS: str = ""  # comma-separated

    # Change notifications
    GRAPH_CLIENT_STATE: SecretStr | None = None
    # The webhook URLs Graph calls (graph_notifications, graph_lifecycle), each with its function key,
    # so secrets. Unset: no subscriptions, the detect timer alone finds changes.
    NOTIFICATION_URL: SecretStr | None = None
    LIFECYCLE_NOTIFICATION_URL: SecretStr | None = None

    # Behaviour
    PROFILE_PRIORITY: str = ""  # comma-separated profile names, highest first, for users with several roles
    # A mapping file (config/mapping.default.toml's format), absolute or relative to the app's root;
    # empty: the connector's default Salesforce mapping, built in.
    MAPPING_FILE: str = ""
    RETRY_MAX_ATTEMPTS: int = Field(6, ge=0, le=20)
    RETRY_BASE_SECONDS: float = Field(30.0, gt=0)
    RETRY_MAX_SECONDS: float = Field(3600.0, gt=0)
    # LICENSE_LIMIT_EXCEEDED is retried after this long (Entra's escrow waits hours), RETRY_MAX_ATTEMPTS times.
    LICENSE_RETRY_SECONDS: float = Field(21600.0, gt=0)
    LEASE_SECONDS: float = Field(120.0, gt=0)
    # Accidental-deletion prevention: deactivations beyond either limit within the window are held
    # until an admin releases them (python -m cli release-held). 0 switches a limit off.
    DEACTIVATION_THRESHOLD: int = Field(500, ge=0)
    DEACTIVATION_THRESHOLD_PERCENT: float = Field(20.0, ge=0, le=100)
    DEACTIVATION_WINDOW_MINUTES: float = Field(60.0, gt=0)
    # Quarantine: Salesforce is left alone while it rejects the credentials or while more than this share
    # of at least QUARANTINE_MIN_OPERATIONS counted operations failed within the window (0: ratio off).
    QUARANTINE_FAILURE_RATIO: float = Field(0.4, ge=0, le=1)
    QUARANTINE_MIN_OPERATIONS: int = Field(20, ge=1)
    QUARANTINE_WINDOW_MINUTES: float = Field(15.0, gt=0)
    # The first probe after this; later probes and deferred messages wait twice as long each time, at most the max.
    QUARANTINE_BACKOFF_BASE_SECONDS: float = Field(60.0, gt=0)
    QUARANTINE_BACKOFF_MAX_SECONDS: float = Field(3600.0, gt=0)
    # Escrow: a user that failed for good is retried this long after the first failure, then at 2x, 4x,
    # then every 4x (6 h, 12 h, 24 h, every 24 h), for 28 days at the default.
    ESCROW_RETRY_SECONDS: float = Field(21600.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> "Settings":
        problems: list[str] = [
            f"{name} is required" for name in ("SALESFORCE_SERVICE_PRINCIPAL_ID", "NOTIFY_SENDER") if not getattr(self, name)
        ]
        if self.GRAPH_DEV_TOKEN is not None and not is_loopback_url(self.GRAPH_BASE_URL):
            problems.append("GRAPH_DEV_TOKEN is for the local emulator only; GRAPH_BASE_URL is not a loopback address")
        need = {
            "jwt": ("SALESFORCE_CONSUMER_KEY", "SALESFORCE_USERNAME", "SALESFORCE_PRIVATE_KEY"),
            "client_credentials": ("SALESFORCE_CONSUMER_KEY", "SALESFORCE_CONSUMER_SECRET"),
            "password": ("SALESFORCE_USERNAME", "SALESFORCE_PASSWORD", "SALESFORCE_SECURITY_TOKEN"),
            "access_token": ("SALESFORCE_INSTANCE_URL", "SALESFORCE_ACCESS_TOKEN"),
        }[self.SALESFORCE_AUTH_MODE]
        problems += [f"{n} is required when SALESFORCE_AUTH_MODE={self.SALESFORCE_AUTH_MODE}" for n in need if getattr(self, n) is None]
        if self.SALESFORCE_AUTH_MODE == "client_credentials" and self.SALESFORCE_DOMAIN in ("login", "test"):
            problems.append("SALESFORCE_DOMAIN must be your My Domain (<name>.my) for client_credentials")
        if not (self.SERVICEBUS_CONNECTION_STRING or self.SERVICEBUS_NAMESPACE):
            problems.append("set ServiceBusConnection__fullyQualifiedNamespace (Azure) or ServiceBusConnection (local)")
        if not (self.STATE_TABLE_ENDPOINT or self.STATE_TABLE_CONNECTION_STRING or self.STATE_SQLITE_PATH):
            problems.append("set STATE_TABLE_ENDPOINT (Azure), STATE_TABLE_CONNECTION_STRING or STATE_SQLITE_PATH (local)")
        if _secret_set(self.NOTIFICATION_URL):
            problems += [f"{n} is required with NOTIFICATION_URL" for n in ("LIFECYCLE_NOTIFICATION_URL", "GRAPH_CLIENT_STATE")
                         if not _secret_set(getattr(self, n))]
        if self.GRAPH_CLIENT_STATE is not None and len(self.GRAPH_CLIENT_STATE.get_secret_value()) > 128:
            problems.append("GRAPH_CLIENT_STATE must be at most 128 characters (Graph's limit for clientState)")
        if not self.notify_recipients:
            problems.append("NOTIFY_RECIPIENTS must name at least one address: dead letters wait until a mail is accepted")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def profile_priority(self) -> tuple[str, ...]:
        return tuple(p.strip() for p in self.PROFILE_PRIORITY.split(",") if p.strip())

    @property
    def notify_recipients(self) -> tuple[str, ...]:
        return tuple(p.strip() for p in self.NOTIFY_RECIPIENTS.split(",") if p.strip())


def _secret_set(value: SecretStr | None) -> bool:
    return value is not None and bool(value.get_secret_value())


def load_settings(**overrides: object) -> Settings:
    """Read and validate; on failure raise one ConfigurationError naming every problem (names only)."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors(include_input=False, include_url=False)
        ]
        raise ConfigurationError("invalid settings: " + " | ".join(problems)) from None
    log.debug("settings loaded: %s", ", ".join(sorted(k for k, v in settings.model_dump().items() if v not in (None, ""))))
    return settings
