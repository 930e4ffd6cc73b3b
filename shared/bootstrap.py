"""The one composition root: settings → adapters → services. Built lazily, once per worker (per
distinct settings), never at import. Tests and the CLI build their own with `build_container`."""
from __future__ import annotations

import functools
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .adapters.graph import GraphDirectory, GraphMailer, StaticTokenCredential, build_graph_client
from .adapters.graph_applications import GraphApplications
from .adapters.graph_client import close_graph_client
from .adapters.graph_subscriptions import GraphSubscriptions
from .adapters.salesforce import SalesforceRestOrg
from .adapters.salesforce_client import (
    client_credentials_client,
    dev_token_client,
    jwt_bearer_client,
    password_client,
)
from .adapters.service_bus import ServiceBusReconcileQueue
from .adapters.state_sqlite import SqliteStateStore
from .adapters.state_tables import TableStateStore
from .core.mapping_config import configured_mapping
from .core.ports import StateStore
from .services import metrics
from .services.admin_mail import AdminMail
from .services.change_notifications import ChangeNotificationReceiver
from .services.detect_changes import ChangeDetector, DetectConfig
from .services.escrow import Escrow, EscrowConfig
from .services.import_profiles import ProfileRoleImporter
from .services.notify_failures import FailureNotifier
from .services.on_demand import OnDemandProvisioner
from .services.provision import Provisioner, ProvisioningConfig, RetryPolicy
from .services.quarantine import DeferringQueue, Quarantine, QuarantineConfig
from .services.safety import DeletionGuard, SafetyConfig
from .services.subscriptions import SubscriptionConfig, SubscriptionManager
from .settings import Settings, load_settings

log = logging.getLogger(__name__)

APP_ROOT = Path(__file__).resolve().parents[1]  # where function_app.py is; MAPPING_FILE is relative to it


@dataclass
class Container:
    settings: Settings
    directory: GraphDirectory
    mailer: GraphMailer
    org: SalesforceRestOrg
    state: StateStore
    queue: ServiceBusReconcileQueue
    provisioner: Provisioner
    detector: ChangeDetector
    notifier: FailureNotifier
    graph_calls: Counter[str]
    graph_client: Any
    safety: DeletionGuard
    quarantine: Quarantine
    escrow: Escrow

    async def aclose(self) -> None:
        """Close network clients (the CLI and tests; a Functions worker keeps them for its lifetime)."""
        await self.queue.close()
        await close_graph_client(self.graph_client)

    @functools.cached_property  # one per worker: it keeps what it knows of the held subscriptions between requests
    def notifications(self) -> ChangeNotificationReceiver:
        secret = self.settings.GRAPH_CLIENT_STATE
        if secret is None:
            raise RuntimeError("GRAPH_CLIENT_STATE is not set: change notifications are not configured")
        manager = self.subscriptions
        return ChangeNotificationReceiver(self.queue, secret.get_secret_value(),
                                          manager.held_ids if manager is not None else None)

    @property
    def on_demand(self) -> OnDemandProvisioner:
        return OnDemandProvisioner(self.directory, self.org, self.provisioner,
                                   self.settings.SALESFORCE_SERVICE_PRINCIPAL_ID)

    @property
    def profile_import(self) -> ProfileRoleImporter:
        return ProfileRoleImporter(self.org, GraphApplications(self.graph_client, calls=self.graph_calls),
                                   service_principal_id=self.settings.SALESFORCE_SERVICE_PRINCIPAL_ID,
                                   application_id=self.settings.SALESFORCE_APPLICATION_ID or None)

    @property
    def subscriptions(self) -> SubscriptionManager | None:
        """None when NOTIFICATION_URL is not set: no subscriptions, the detect timer alone."""
        s = self.settings
        if not _secret(s.NOTIFICATION_URL):
            return None
        config = SubscriptionConfig(_secret(s.NOTIFICATION_URL), _secret(s.LIFECYCLE_NOTIFICATION_URL),
                                    _secret(s.GRAPH_CLIENT_STATE))
        return SubscriptionManager(GraphSubscriptions(self.graph_client, calls=self.graph_calls), self.state, config)


def _secret(value: Any) -> str:
    return value.get_secret_value() if value is not None else ""


def _azure_credential(settings: Settings) -> Any:
    from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

    if settings.AZURE_CLIENT_ID:
        return ManagedIdentityCredential(client_id=settings.AZURE_CLIENT_ID)
    return DefaultAzureCredential()


def salesforce_connector(s: Settings) -> Callable[[], Any]:
    """A zero-argument function that logs in to Salesforce; called again to re-authenticate."""
    if s.SALESFORCE_AUTH_MODE == "access_token":
        return functools.partial(dev_token_client, s.SALESFORCE_INSTANCE_URL or "", _secret(s.SALESFORCE_ACCESS_TOKEN),
                                 s.SALESFORCE_CA_BUNDLE)
    if s.SALESFORCE_AUTH_MODE == "jwt":
        return functools.partial(jwt_bearer_client, s.SALESFORCE_CONSUMER_KEY or "", s.SALESFORCE_USERNAME or "",
                                 _secret(s.SALESFORCE_PRIVATE_KEY), s.SALESFORCE_DOMAIN)
    if s.SALESFORCE_AUTH_MODE == "client_credentials":
        return functools.partial(client_credentials_client, s.SALESFORCE_CONSUMER_KEY or "",
                                 _secret(s.SALESFORCE_CONSUMER_SECRET), s.SALESFORCE_DOMAIN)
    return functools.partial(password_client, s.SALESFORCE_USERNAME or "", _secret(s.SALESFORCE_PASSWORD),
                             _secret(s.SALESFORCE_SECURITY_TOKEN), s.SALESFORCE_DOMAIN)


def state_store(s: Settings) -> StateStore:
    if s.STATE_SQLITE_PATH:
        return SqliteStateStore(s.STATE_SQLITE_PATH)
    if s.STATE_TABLE_CONNECTION_STRING is not None:
        return TableStateStore.from_connection_string(_secret(s.STATE_TABLE_CONNECTION_STRING), table_prefix=s.STATE_TABLE_PREFIX)
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    credential = ManagedIdentityCredential(client_id=s.AZURE_CLIENT_ID) if s.AZURE_CLIENT_ID else DefaultAzureCredential()
    return TableStateStore.from_endpoint(s.STATE_TABLE_ENDPOINT or "", credential, table_prefix=s.STATE_TABLE_PREFIX)


def service_bus_queue(s: Settings) -> ServiceBusReconcileQueue:
    if s.SERVICEBUS_CONNECTION_STRING is not None:
        return ServiceBusReconcileQueue(s.SERVICEBUS_QUEUE_NAME, connection_string=_secret(s.SERVICEBUS_CONNECTION_STRING))
    return ServiceBusReconcileQueue(
        s.SERVICEBUS_QUEUE_NAME, fully_qualified_namespace=s.SERVICEBUS_NAMESPACE, credential=_azure_credential(s)
    )


def build_container(settings: Settings) -> Container:
    graph_credential = (
        StaticTokenCredential(_secret(settings.GRAPH_DEV_TOKEN)) if settings.GRAPH_DEV_TOKEN is not None
        else _azure_credential(settings)
    )
    graph = build_graph_client(settings.GRAPH_BASE_URL, graph_credential)
    graph_calls: Counter[str] = Counter()
    directory = GraphDirectory(graph, calls=graph_calls)
    mailer = GraphMailer(graph, calls=graph_calls, save_to_sent_items=False)
    org = SalesforceRestOrg(salesforce_connector(settings), timeout=settings.SALESFORCE_TIMEOUT_SECONDS)
    state = state_store(settings)
    queue = service_bus_queue(settings)
    mapping = configured_mapping(settings.MAPPING_FILE, APP_ROOT)
    admin_mail = AdminMail(state, mailer, settings.NOTIFY_SENDER, settings.notify_recipients)
    safety = DeletionGuard(
        state, admin_mail, queue,
        SafetyConfig(settings.DEACTIVATION_THRESHOLD, settings.DEACTIVATION_THRESHOLD_PERCENT,
                     settings.DEACTIVATION_WINDOW_MINUTES * 60),
    )
    quarantine = Quarantine(
        state, admin_mail, queue,
        QuarantineConfig(settings.QUARANTINE_FAILURE_RATIO, settings.QUARANTINE_MIN_OPERATIONS,
                         settings.QUARANTINE_WINDOW_MINUTES * 60, settings.QUARANTINE_BACKOFF_BASE_SECONDS,
                         settings.QUARANTINE_BACKOFF_MAX_SECONDS, settings.LEASE_SECONDS),
    )
    # The detect timer's and the escrow's messages wait for the next probe while quarantined.
    deferring_queue = DeferringQueue(queue, quarantine)
    escrow = Escrow(state, deferring_queue, EscrowConfig(settings.ESCROW_RETRY_SECONDS))
    provisioner = Provisioner(
        directory, org, state, queue,
        ProvisioningConfig(
            service_principal_id=settings.SALESFORCE_SERVICE_PRINCIPAL_ID,
            mapping=mapping,
            profile_priority=settings.profile_priority,
            lease_seconds=settings.LEASE_SECONDS,
            retry=RetryPolicy(settings.RETRY_MAX_ATTEMPTS, settings.RETRY_BASE_SECONDS, settings.RETRY_MAX_SECONDS,
                              settings.LICENSE_RETRY_SECONDS),
        ),
        safety, quarantine, escrow,
    )
    detector = ChangeDetector(directory, deferring_queue, state, DetectConfig(settings.SALESFORCE_SERVICE_PRINCIPAL_ID,
                                                                             mapping.source_attributes,
                                                                             mapping.permission_sets.group_ids))
    notifier = FailureNotifier(state, mailer, settings.NOTIFY_SENDER, settings.notify_recipients, escrow)
    metrics.observe_api_calls(graph_calls, org.calls)
    return Container(settings, directory, mailer, org, state, queue, provisioner, detector, notifier, graph_calls, graph,
                     safety, quarantine, escrow)


@functools.lru_cache(maxsize=4)
def _container_for(settings: Settings) -> Container:
    return build_container(settings)


def current_container() -> Container:
    """The container for the current environment's settings, built on first use in this worker."""
    return _container_for(load_settings())
