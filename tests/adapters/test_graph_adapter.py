"""The Graph adapter, driven through the real msgraph-sdk over HTTP against the Graph emulator."""
from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ClientAuthenticationError

from emulators.graph import Tenant, run_graph_emulator
from emulators.graph.server import GraphEmulator
from shared.adapters.graph import (
    GraphDirectory,
    GraphMailer,
    GraphRetryPolicy,
    StaticTokenCredential,
    build_graph_client,
    close_graph_client,
)
from shared.core.errors import ConfigurationError, DeltaTokenExpired, PermanentError, TransientError
from shared.core.models import DeltaPage

SELECT = ["displayName", "mail", "accountEnabled"]
FAST_RETRY = GraphRetryPolicy(max_retries=2, backoff_seconds=0.01)


@pytest.fixture
def tenant() -> Tenant:
    return Tenant(seed=3)


@pytest.fixture
def graph(tenant: Tenant) -> Iterator[GraphEmulator]:
    with run_graph_emulator(tenant, page_size=3) as emulator:
        yield emulator


@pytest.fixture
async def client_for() -> AsyncIterator[Callable[..., object]]:
    """Build Graph clients for the test and close their connection pools afterwards."""
    clients = []

    def build(base_url: str, token: str):
        clients.append(build_graph_client(base_url, StaticTokenCredential(token), retry=FAST_RETRY))
        return clients[-1]

    yield build
    for client in clients:
        await close_graph_client(client)


@pytest.fixture
def directory(graph: GraphEmulator, client_for) -> Callable[..., GraphDirectory]:
    def build(*, page_size: int = 999, token: str | None = None, base_url: str | None = None) -> GraphDirectory:
        return GraphDirectory(client_for(base_url or graph.base_url, token or graph.token), page_size=page_size)

    return build


def add_users(tenant: Tenant, count: int, prefix: str = "user") -> list[str]:
    return [
        tenant.add_user(userPrincipalName=f"{prefix}{i}@contoso.com", displayName=f"User {i}",
                        mail=f"{prefix}{i}@contoso.com")
        for i in range(count)
    ]


async def full_sync(dir_: GraphDirectory, link: str | None = None) -> tuple[list[DeltaPage], str]:
    pages = []
    while True:
        page = await dir_.users_delta_page(link, SELECT)
        pages.append(page)
        if page.delta_link:
            return pages, page.delta_link
        assert page.next_link
        link = page.next_link


def ids_of(pages: list[DeltaPage]) -> list[str]:
    return [change.user_id for page in pages for change in page.changes]


# ----- users/delta -------------------------------------------------------------------------------------
async def test_initial_sync_follows_every_page_including_empty_ones_with_a_next_link(directory, graph, tenant):
    user_ids = add_users(tenant, 7)
    graph.delta.empty_pages = 2
    pages, delta_link = await full_sync(directory())
    assert sorted(ids_of(pages)) == sorted(user_ids)
    assert [len(p.changes) for p in pages][:2] == [0, 0] and all(p.next_link for p in pages[:2])
    assert len(pages) == 2 + 3  # two empty pages, then 3 + 3 + 1 users
    assert delta_link.startswith(graph.base_url + "/users/delta?$deltatoken=")


async def test_resuming_from_a_stored_delta_link_shows_only_the_changes(directory, graph, tenant):
    user_ids = add_users(tenant, 5)
    dir_ = directory()
    _, stored = await full_sync(dir_)
    tenant.update_user(user_ids[1], displayName="Renamed")
    tenant.update_user(user_ids[2], jobTitle="not selected, so not a change")
    new_id = tenant.add_user(userPrincipalName="new@contoso.com", displayName="New")
    pages, next_stored = await full_sync(dir_, stored)
    assert ids_of(pages) == [user_ids[1], new_id]
    pages, _ = await full_sync(dir_, next_stored)
    assert ids_of(pages) == []


async def test_removed_objects_carry_both_reasons(directory, graph, tenant):
    soft, hard, restored = add_users(tenant, 3)
    dir_ = directory()
    _, stored = await full_sync(dir_)
    tenant.soft_delete_user(soft)
    tenant.hard_delete_user(hard)
    tenant.soft_delete_user(restored)
    tenant.restore_user(restored)
    pages, _ = await full_sync(dir_, stored)
    removed = {c.user_id: c.removed for page in pages for c in page.changes}
    assert removed == {soft: "changed", hard: "deleted", restored: None}


async def test_ids_come_back_lower_case(directory, graph, tenant):
    tenant.add_user(id="ABCDEF01-2345-4678-89AB-CDEF01234567", userPrincipalName="up@contoso.com", displayName="Up")
    pages, _ = await full_sync(directory())
    assert ids_of(pages) == ["abcdef01-2345-4678-89ab-cdef01234567"]


async def test_an_expired_delta_token_raises_delta_token_expired(directory, graph, tenant):
    add_users(tenant, 2)
    dir_ = directory()
    _, stored = await full_sync(dir_)
    graph.delta.expire_tokens()
    with pytest.raises(DeltaTokenExpired):
        await dir_.users_delta_page(stored, SELECT)


async def test_410_gone_raises_delta_token_expired(directory, graph, tenant):
    add_users(tenant, 2)
    dir_ = directory()
    _, stored = await full_sync(dir_)
    graph.delta.gone_requests = 1
    with pytest.raises(DeltaTokenExpired):
        await dir_.users_delta_page(stored, SELECT)
    pages, _ = await full_sync(dir_, stored)  # the knob was consumed: the link works again
    assert ids_of(pages) == []


async def test_a_delta_link_from_another_endpoint_starts_a_full_sync(directory, graph, tenant):
    with pytest.raises(DeltaTokenExpired):
        await directory().users_delta_page("https://graph.microsoft.com/v1.0/users/delta?$deltatoken=x", SELECT)
    assert graph.calls["users.delta"] == 0


# ----- assignments, groups, app roles -----------------------------------------------------------------
@pytest.fixture
def salesforce_app(tenant: Tenant) -> dict[str, str]:
    sp = tenant.add_service_principal("Salesforce")
    return {
        "sp": sp,
        "standard": tenant.add_app_role(sp, "Standard User", value="StandardUser"),
        "sales": tenant.add_app_role(sp, "Sales User", value="SalesUser"),
        "admin": tenant.add_app_role(sp, "System Administrator", value="SystemAdministrator"),
    }


async def test_app_role_assigned_to_follows_every_page(directory, graph, tenant, salesforce_app):
    user_ids = add_users(tenant, 11)
    for user_id in user_ids:
        tenant.assign(salesforce_app["sp"], user_id, salesforce_app["standard"])
    group = tenant.add_group("Sales")
    tenant.assign(salesforce_app["sp"], group, salesforce_app["sales"])
    rows = await directory(page_size=4).app_role_assignments(salesforce_app["sp"].upper())
    assert graph.calls["servicePrincipals.appRoleAssignedTo"] == 3
    assert sorted(r.principal_id for r in rows) == sorted([*user_ids, group])
    assert {r.principal_type for r in rows} == {"User", "Group"}
    assert len({r.id for r in rows}) == 12


async def test_group_members_pages_and_keeps_only_users(directory, graph, tenant):
    user_ids = add_users(tenant, 5)
    group, nested = tenant.add_group("Sales"), tenant.add_group("Contractors")
    for user_id in user_ids:
        tenant.add_member(group, user_id)
    tenant.add_member(group, nested)
    tenant.add_member(nested, tenant.add_user(userPrincipalName="c@contoso.com", displayName="C"))
    member_ids = await directory(page_size=2).group_member_ids(group)
    assert member_ids == user_ids
    assert graph.calls["groups.members"] == 3


async def test_app_roles_of_the_service_principal(directory, graph, salesforce_app):
    roles = await directory().app_roles(salesforce_app["sp"])
    assert {r.display_name: r.id for r in roles} == {
        "Standard User": salesforce_app["standard"], "Sales User": salesforce_app["sales"],
        "System Administrator": salesforce_app["admin"],
    }


async def test_user_state_has_direct_and_group_roles_but_not_nested_group_roles(directory, graph, tenant, salesforce_app):
    sp = salesforce_app["sp"]
    user, other = add_users(tenant, 2)
    sales, contractors = tenant.add_group("Sales"), tenant.add_group("Contractors")
    tenant.add_member(sales, user)
    tenant.add_member(sales, contractors)
    tenant.add_member(contractors, other)  # only nested: must not get Sales User
    tenant.assign(sp, user, salesforce_app["standard"])
    tenant.assign(sp, sales, salesforce_app["sales"])
    tenant.assign(sp, contractors, salesforce_app["admin"])  # granted to the nested group's direct members only
    another_app = tenant.add_service_principal("Another app")
    tenant.assign(another_app, user, tenant.add_app_role(another_app, "Reader", value="Reader"))

    dir_ = directory(page_size=1)
    state = await dir_.user_state(user.upper(), ["displayName", "mail", "givenName"], sp)
    assert state.user is not None and state.user_id == user
    assert state.user.attributes == {"id": user, "displayName": "User 0", "mail": "user0@contoso.com",
                                     "givenName": None}
    assert state.app_role_ids == {salesforce_app["standard"], salesforce_app["sales"]}
    nested_state = await dir_.user_state(other, ["displayName"], sp)
    assert nested_state.app_role_ids == {salesforce_app["admin"]}


@pytest.mark.parametrize("fate", ["unknown", "soft_deleted", "hard_deleted"])
async def test_user_state_of_a_missing_user_has_no_user(directory, graph, tenant, salesforce_app, fate):
    (user_id,) = add_users(tenant, 1)
    tenant.assign(salesforce_app["sp"], user_id, salesforce_app["standard"])
    if fate == "unknown":
        user_id = "9f1c2d3e-0000-4000-8000-000000000001"
    elif fate == "soft_deleted":
        tenant.soft_delete_user(user_id)
    else:
        tenant.hard_delete_user(user_id)
    state = await directory().user_state(user_id, SELECT, salesforce_app["sp"])
    assert state.user is None and state.app_role_ids == frozenset() and state.user_id == user_id


# ----- sendMail ---------------------------------------------------------------------------------------
async def test_send_mail_is_accepted_and_recorded(graph, tenant, client_for):
    sender = tenant.add_user(userPrincipalName="alerts@contoso.com", displayName="Alerts")
    mailer = GraphMailer(client_for(graph.base_url, graph.token), save_to_sent_items=False)
    await mailer.send_mail("alerts@contoso.com", ["admin@contoso.com", "o'brien@contoso.com"], "3 failures",
                           "Zoë Ñúñez: DUPLICATE_USERNAME")
    (mail,) = graph.outbox
    assert (mail.sender_id, mail.to, mail.subject, mail.body) == (
        sender, ("admin@contoso.com", "o'brien@contoso.com"), "3 failures", "Zoë Ñúñez: DUPLICATE_USERNAME")
    assert mail.save_to_sent_items is False and mail.content_type == "text"
    assert mailer.calls["send_mail"] == 1


async def test_send_mail_from_an_unknown_mailbox_is_a_permanent_error(graph, client_for):
    with pytest.raises(PermanentError) as caught:
        await GraphMailer(client_for(graph.base_url, graph.token)).send_mail("nobody@contoso.com", ["admin@contoso.com"], "s", "b")
    assert caught.value.code == "ErrorInvalidUser" and graph.outbox == []


# ----- failures -------------------------------------------------------------------------------------
async def test_429_with_retry_after_is_honoured_then_succeeds(directory, graph, tenant, salesforce_app):
    (user_id,) = add_users(tenant, 1)
    graph.faults.add("users.get", 429, times=1, retry_after=1)
    state = await directory().user_state(user_id, SELECT, salesforce_app["sp"])
    assert state.user is not None
    first, second = [r for r in graph.requests if r.route == "users.get"]
    assert (first.retry_attempt, second.retry_attempt) == (0, 1)
    assert second.at - first.at >= 0.95  # waited for Retry-After (a lower bound: noise only adds)


async def test_retries_exhausted_on_503_become_a_transient_error(directory, graph, tenant, salesforce_app):
    (user_id,) = add_users(tenant, 1)
    graph.faults.add("users.get", 503)
    with pytest.raises(TransientError) as caught:
        await directory().user_state(user_id, SELECT, salesforce_app["sp"])
    assert caught.value.code == "serviceNotAvailable"
    assert graph.calls["users.get"] == 1 + FAST_RETRY.max_retries


async def test_a_throttle_longer_than_the_retry_ceiling_surfaces_its_retry_after(directory, graph, tenant):
    graph.faults.add("users.delta", 429, retry_after=600)
    with pytest.raises(TransientError) as caught:
        await directory().users_delta_page(None, SELECT)
    assert caught.value.retry_after == 600 and graph.calls["users.delta"] == 1


async def test_a_non_json_502_becomes_a_transient_error(directory, graph, tenant):
    graph.faults.add("users.delta", 502, times=1)
    with pytest.raises(TransientError) as caught:
        await directory().users_delta_page(None, SELECT)
    assert caught.value.code == "HTTP_502" and caught.value.system == "graph"


async def test_a_wrong_token_is_a_permanent_error(directory):
    with pytest.raises(PermanentError) as caught:
        await directory(token="not-the-token").users_delta_page(None, SELECT)
    assert caught.value.code == "InvalidAuthenticationToken"
    assert "not-the-token" not in str(caught.value)


async def test_a_closed_port_is_a_transient_error(directory, graph):
    base_url = graph.base_url
    graph.stop()
    with pytest.raises(TransientError) as caught:
        await directory(base_url=base_url).users_delta_page(None, SELECT)
    assert caught.value.code == "ConnectError"


# ----- client construction -------------------------------------------------------------------------
@pytest.mark.parametrize("base_url", ["https://graph.microsoft.com/v1.0", "https://graph.microsoft.us/v1.0",
                                      "https://127.0.0.2.nip.io/v1.0"])
def test_the_static_token_is_refused_for_a_non_loopback_url(base_url):
    with pytest.raises(ConfigurationError):
        build_graph_client(base_url, StaticTokenCredential("dev"))


async def test_the_static_token_refuses_a_scope_for_a_real_host():
    with pytest.raises(ConfigurationError):
        await StaticTokenCredential("dev").get_token("https://graph.microsoft.com/.default")
    assert (await StaticTokenCredential("dev").get_token("http://[::1]/.default")).token == "dev"
    assert "dev" not in repr(StaticTokenCredential("dev"))


def test_plain_http_is_refused_for_a_real_host():
    with pytest.raises(ConfigurationError):
        build_graph_client("http://graph.microsoft.com/v1.0", StaticTokenCredential("dev"))


def test_a_national_cloud_is_a_base_url_away():
    client = build_graph_client("https://graph.microsoft.us/v1.0/", _NeverAskedCredential())
    assert client.request_adapter.base_url == "https://graph.microsoft.us/v1.0"


class _NeverAskedCredential(AsyncTokenCredential):
    async def get_token(self, *scopes, **kwargs):
        raise AssertionError("no token should be requested")

    async def close(self) -> None:
        return None


async def test_send_mail_retried_after_503_is_sent_once(graph, tenant, client_for):
    tenant.add_user(userPrincipalName="alerts@contoso.com", displayName="Alerts")
    graph.faults.add("users.sendMail", 503, times=1)
    await GraphMailer(client_for(graph.base_url, graph.token)).send_mail("alerts@contoso.com", ["a@contoso.com"],
                                                                        "s", "b")
    assert graph.calls["users.sendMail"] == 2 and len(graph.outbox) == 1


async def test_a_credential_that_cannot_get_a_token_is_a_transient_error(graph):
    class FailingCredential(AsyncTokenCredential):
        async def get_token(self, *scopes, **kwargs):
            raise ClientAuthenticationError("managed identity endpoint unavailable")

        async def close(self) -> None:
            return None

    client = build_graph_client(graph.base_url, FailingCredential(), retry=FAST_RETRY)
    try:
        with pytest.raises(TransientError) as caught:
            await GraphDirectory(client).users_delta_page(None, SELECT)
    finally:
        await close_graph_client(client)
    assert caught.value.code == "CredentialUnavailable" and graph.calls["users.delta"] == 0


async def test_groups_delta_pages_and_transitive_members(graph: GraphEmulator, tenant: Tenant, directory) -> None:
    a, b, c, d = add_users(tenant, 4, prefix="member")
    sales, nested, deeper = tenant.add_group("Sales"), tenant.add_group("Nested"), tenant.add_group("Deeper")
    for group, member in ((sales, a), (sales, b), (sales, d), (sales, nested), (nested, deeper), (deeper, c)):
        tenant.add_member(group, member)
    dir_ = directory()

    page = await dir_.groups_delta_page(None, [sales.upper()])  # the emulator's pages hold 3 members
    assert page.next_link and not page.delta_link
    changes = list(page.changes)
    while page.next_link:
        page = await dir_.groups_delta_page(page.next_link, [sales])
        changes += page.changes
    assert {(ch.member_id, ch.member_type, ch.removed) for ch in changes} == {
        (a, "user", False), (b, "user", False), (d, "user", False), (nested, "group", False)}
    assert all(ch.group_id == sales for ch in changes)

    tenant.remove_member(sales, b)
    later = await dir_.groups_delta_page(page.delta_link, [sales])
    assert [(ch.member_id, ch.removed) for ch in later.changes] == [(b, True)] and later.delta_link

    assert set(await dir_.group_subgroup_ids(sales)) == {nested, deeper}
    assert set(await directory(page_size=1).group_transitive_user_ids(sales)) == {a, c, d}  # paged, header kept
    assert dir_.calls["group_transitive_groups"] == 1


async def test_groups_delta_refuses_more_groups_than_one_filter_holds(directory) -> None:
    with pytest.raises(ConfigurationError):
        await directory().groups_delta_page(None, [f"00000000-0000-4000-8000-{n:012d}" for n in range(51)])
    with pytest.raises(ConfigurationError):
        await directory().groups_delta_page(None, ["x' or id ne '1"])
