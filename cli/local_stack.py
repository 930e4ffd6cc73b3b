"""The whole system on loopback: Graph, Salesforce and Service Bus emulators seeded with a messy
tenant and an org, plus the settings that point the real adapters at them."""
from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Iterator, Mapping

from emulators.graph import run_graph_emulator
from emulators.graph.demo_tenant import DemoTenant, seed_demo_tenant
from emulators.graph.tenant import Tenant
from emulators.salesforce import EmulatedOrg, run_salesforce_emulator
from emulators.salesforce.runner import EmulatorHandle
from emulators.servicebus import QueueConfig, run_servicebus_emulator
from emulators.servicebus.server import ServiceBusEmulator

QUEUE = "provision-users"
MAX_DELIVERY_COUNT = 10
DEMO_PROFILES = {
    "System Administrator": "Salesforce",
    "Standard User": "Salesforce",
    "Sales User": "Salesforce",
    "Support User": "Salesforce",
    "Chatter Free User": "Chatter Free",
}
DEMO_PROFILE_PRIORITY = "System Administrator,Sales User,Support User,Standard User,Chatter Free User"


@dataclass
class LocalStack:
    tenant: Tenant
    demo: DemoTenant
    graph: object  # emulators.graph.GraphEmulator
    salesforce: EmulatorHandle
    servicebus: ServiceBusEmulator
    env: dict[str, str]
    workdir: Path

    @property
    def org(self) -> EmulatedOrg:
        return self.salesforce.org


def _demo_org(demo: DemoTenant, tenant: Tenant) -> EmulatedOrg:
    """An org whose profiles are the app's roles, with a few full licences fewer than the users a
    create would succeed for, so LICENSE_LIMIT_EXCEEDED shows as in a real org."""
    role_names = {role_id: name for name, role_id in demo.app_role_ids.items()}
    taken = set(demo.taken_usernames)

    def creatable(user_id: str) -> bool:
        user = tenant.find_user(user_id) or {}
        upn = (user.get("userPrincipalName") or "").lower()
        return bool(user.get("mail")) and upn not in taken and len(upn) <= 80 and user_id not in demo.disabled_ids

    needing_full_licence = sum(
        1 for user_id, roles in demo.expected_roles.items()
        if creatable(user_id) and any(DEMO_PROFILES.get(role_names.get(r, "")) == "Salesforce" for r in roles)
    )
    org = EmulatedOrg(
        profiles=DEMO_PROFILES,
        licenses={"Salesforce": max(1, needing_full_licence - max(2, needing_full_licence // 100)), "Chatter Free": 5000},
        daily_api_limit=1_000_000,
    )
    org.registry.reserve(*demo.taken_usernames)
    return org


@contextlib.contextmanager
def local_stack(users: int = 1200, seed: int = 7, workdir: str | None = None, retry_base_seconds: float = 1.0,
                lock_seconds: float = 30.0, settings: Mapping[str, str] | None = None) -> Iterator[LocalStack]:
    """Start and seed everything; yield the handles and the settings (as environment variables).
    lock_seconds: the queue's message lock duration; settings: app settings to add or override."""
    tenant = Tenant(seed=seed)
    demo = seed_demo_tenant(tenant, users=users, seed=seed)
    with contextlib.ExitStack() as stack:
        work = Path(workdir) if workdir else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="provisioning-")))
        work.mkdir(parents=True, exist_ok=True)
        graph = stack.enter_context(run_graph_emulator(tenant, page_size=200))
        salesforce = stack.enter_context(run_salesforce_emulator(_demo_org(demo, tenant)))
        servicebus = stack.enter_context(
            run_servicebus_emulator(queues=[QueueConfig(QUEUE, max_delivery_count=MAX_DELIVERY_COUNT,
                                                     lock_duration=lock_seconds)])
        )
        env = {
            "GRAPH_BASE_URL": graph.base_url,
            "GRAPH_DEV_TOKEN": graph.token,
            "SALESFORCE_SERVICE_PRINCIPAL_ID": demo.service_principal_id,
            "SALESFORCE_AUTH_MODE": "access_token",
            "SALESFORCE_INSTANCE_URL": salesforce.instance_url,
            "SALESFORCE_ACCESS_TOKEN": salesforce.token,
            "SALESFORCE_CA_BUNDLE": salesforce.ca_path,
            "ServiceBusConnection": servicebus.connection_string,
            "SERVICEBUS_QUEUE_NAME": QUEUE,
            "STATE_SQLITE_PATH": str(work / "state.sqlite3"),
            "NOTIFY_SENDER": demo.notification_sender,
            "NOTIFY_RECIPIENTS": "identity-admins@contoso.com",
            "GRAPH_CLIENT_STATE": "local-demo-client-state",
            "PROFILE_PRIORITY": DEMO_PROFILE_PRIORITY,
            "RETRY_BASE_SECONDS": str(retry_base_seconds),
            "RETRY_MAX_SECONDS": str(retry_base_seconds * 8),
            "DETECT_SCHEDULE": "0 */5 * * * *",
            **(settings or {}),
        }
        yield LocalStack(tenant, demo, graph, salesforce, servicebus, env, work)


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration (the Functions host reads settings from there)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


@contextlib.asynccontextmanager
async def app_settings(stack: LocalStack, overrides: Mapping[str, str] | None = None) -> AsyncIterator[LocalStack]:
    """The app pointed at `stack` (its settings in the environment, where the Functions host puts them,
    with `overrides` on top) for the duration; the container those settings built is closed afterwards."""
    from shared.bootstrap import current_container

    with environment({**stack.env, **(overrides or {})}):
        try:
            yield stack
        finally:
            await current_container().aclose()
