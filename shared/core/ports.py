"""The interfaces the services depend on. Adapters implement them; tests use real adapters against
the emulators, or small fakes that implement the same Protocol. Directory, Salesforce and queue calls
are async (the SDKs behind them do network I/O); the state store is sync (small, fast key lookups)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Mapping, Protocol, Sequence

from .errors import ProvisioningError
from .messages import ReconcileMessage
from .models import (
    AppRole,
    AppRoleAssignment,
    AppRoleDefinition,
    DeltaPage,
    EntraApplication,
    EntraUserState,
    FailureRecord,
    GraphSubscription,
    GroupDeltaPage,
    PermissionSetAssignment,
    SalesforceProfile,
    SalesforceRole,
    SalesforceUser,
    SubscriptionRequest,
    UserLink,
)
from .escrow import EscrowEntry
from .permission_sets import PermissionTarget
from .quarantine import QuarantineStatus
from .safety import HeldDeactivation


class Directory(Protocol):
    """Microsoft Entra ID through Microsoft Graph."""

    async def users_delta_page(self, link: str | None, select: Sequence[str]) -> DeltaPage:
        """First page of users/delta with $select when link is None, else the page at a stored
        nextLink/deltaLink. Raises DeltaTokenExpired when the link is no longer valid."""
        ...

    async def app_role_assignments(self, service_principal_id: str) -> list[AppRoleAssignment]:
        """Every appRoleAssignedTo row of the Salesforce service principal (all pages)."""
        ...

    async def group_member_ids(self, group_id: str) -> list[str]:
        """Object ids of the group's direct members that are users (all pages)."""
        ...

    async def groups_delta_page(self, link: str | None, group_ids: Sequence[str]) -> GroupDeltaPage:
        """First page of groups/delta for those groups (at most 50) with their members when link is
        None, else the page at a stored nextLink/deltaLink. Raises DeltaTokenExpired like users_delta_page."""
        ...

    async def group_subgroup_ids(self, group_id: str) -> list[str]:
        """Object ids of the groups nested in the group, at any depth."""
        ...

    async def group_transitive_user_ids(self, group_id: str) -> list[str]:
        """Object ids of the users in the group, directly or through nested groups."""
        ...

    async def app_roles(self, service_principal_id: str) -> list[AppRole]:
        ...

    async def user_state(self, user_id: str, select: Sequence[str], service_principal_id: str) -> EntraUserState:
        """The user's selected attributes now, and the Salesforce app roles granted to it directly or
        through a group it is a direct member of. user is None when Graph says 404."""
        ...

    async def user_states(
        self, user_ids: Sequence[str], select: Sequence[str], service_principal_id: str, *,
        group_ids: Sequence[str] = (),
    ) -> dict[str, EntraUserState | ProvisioningError]:
        """user_state for many users at once (Graph JSON batching), keyed by lower-case id; a failure
        is that user's alone. With group_ids, each state's member_of says which of those groups the
        user is a member of, directly or through nested groups."""
        ...


class Mailer(Protocol):
    async def send_mail(self, sender: str, to: Sequence[str], subject: str, body: str) -> None:
        """Returns once the mail service accepted the message (Graph sendMail 202); raises otherwise."""
        ...


@dataclass(frozen=True, slots=True)
class RecordResult:
    """The outcome of one record of a collection write, in request order."""

    salesforce_id: str | None
    error: ProvisioningError | None = None


class SalesforceOrg(Protocol):
    async def find_users(
        self, fields: Sequence[str], *, ids: Iterable[str] = (), usernames: Iterable[str] = (),
        match: Mapping[str, Iterable[str]] | None = None,
    ) -> list[SalesforceUser]:
        """Users whose Id is in ids, whose Username is in usernames (case-insensitive), or whose field F
        has one of match[F]'s values (other matching attributes, SelectUniqueValue candidates), with the
        given fields, in as few SOQL queries as the URL length allows (`Id IN (…) OR Username IN (…) OR …`)."""
        ...

    async def profile_ids(self, *, refresh: bool = False) -> Mapping[str, str]:
        """Profile Name → Id, queried once and cached; refresh reads again (at most once a minute), for a
        name the cache does not know."""
        ...

    async def user_roles(self, *, refresh: bool = False) -> Sequence[SalesforceRole]:
        """The org's roles (UserRole), queried once and cached; refresh as for profile_ids."""
        ...

    async def taken_values(self, values: Mapping[str, Iterable[str]]) -> dict[str, set[str]]:
        """Of the given values of each User field (e.g. Alias, CommunityNickname), those some user in the
        org, active or not, already has (compared case-insensitively, as Salesforce does), as stored in
        Salesforce; one SOQL query for all fields (`WHERE A IN (…) OR B IN (…)`) unless the URL is too long."""
        ...

    async def create_users(self, records: Sequence[Mapping[str, Any]]) -> list[RecordResult]:
        """composite/sobjects POST, up to 200 records per call, allOrNone=false."""
        ...

    async def update_users(self, records: Sequence[Mapping[str, Any]]) -> list[RecordResult]:
        """composite/sobjects PATCH; each record carries its Id."""
        ...

    # permission sets from Entra groups (shared/services/permission_sets.py)
    async def permission_target_ids(self, targets: Iterable[PermissionTarget]) -> Mapping[PermissionTarget, str]:
        """Ids of those permission sets (by Name, not profile-owned) and permission set groups (by
        DeveloperName) that exist; absent ones are left out."""
        ...

    async def permission_set_assignments(
        self, assignee_ids: Iterable[str], permission_set_ids: Iterable[str], permission_set_group_ids: Iterable[str],
    ) -> list[PermissionSetAssignment]:
        """The users' assignments to any of those permission sets or permission set groups."""
        ...

    async def create_permission_set_assignments(self, records: Sequence[Mapping[str, Any]]) -> list[RecordResult]:
        """composite/sobjects POST of PermissionSetAssignment records, up to 200 per call, allOrNone=false."""
        ...

    async def delete_permission_set_assignments(self, ids: Sequence[str]) -> list[RecordResult]:
        """composite/sobjects DELETE of assignments by id, up to 200 per call, allOrNone=false."""
        ...


class ProfileCatalog(Protocol):
    """The Salesforce profiles that can be imported as app roles."""

    async def assignable_profiles(self) -> list[SalesforceProfile]:
        """Profiles a user this app creates can have (internal users: Standard and Chatter licences)."""
        ...


class ApplicationRoles(Protocol):
    """The appRoles of the Salesforce app's application object (Graph /applications)."""

    async def find_application(self, application_id: str | None, service_principal_id: str) -> EntraApplication:
        """By object id or appId; None: the application behind the service principal."""
        ...

    async def replace_app_roles(self, object_id: str, roles: Sequence[AppRoleDefinition]) -> None:
        """PATCH the whole appRoles collection (Graph replaces it)."""
        ...


class ReconcileQueue(Protocol):
    async def send(self, messages: Sequence[ReconcileMessage], *, delay_seconds: float = 0) -> None:
        """Send in as few batches as the size limit allows; delay schedules the enqueue. Raises on failure
        (the caller must then not advance its checkpoint)."""
        ...


class StateStore(Protocol):
    """Durable state: Azure Table Storage in Azure, SQLite locally. One contract test suite for both."""

    def get_cursor(self, name: str) -> str | None:
        ...

    def set_cursor(self, name: str, value: str | None) -> None:
        """None deletes the cursor."""
        ...

    def assignment_snapshot(self) -> dict[str, frozenset[str]]:
        """User object id → app role ids, as last seen by the detect cycle."""
        ...

    def apply_assignment_changes(self, upserts: Mapping[str, frozenset[str]], removals: Iterable[str]) -> None:
        ...

    def get_link(self, entra_id: str) -> UserLink | None:
        ...

    def put_link(self, link: UserLink) -> None:
        ...

    def delete_link(self, entra_id: str) -> bool:
        """Forget the user's sticky link, so its next reconcile matches afresh; False if it had none."""
        ...

    def links_to_salesforce_user(self, salesforce_id: str) -> list[UserLink]:
        """The links that point at this Salesforce user (15- or 18-character id; a scan, for admin commands)."""
        ...

    def put_create_intents(self, intents: Mapping[str, str]) -> None:
        """Entra id → the Username a Salesforce user is about to be created with, recorded before the
        create call. An intent outlives a create whose answer never came (a timeout, a crashed
        worker), so a later reconcile still finds that user under this Username, even once the UPN
        changed. Insert or replace."""
        ...

    def create_intents(self, entra_ids: Iterable[str]) -> dict[str, str]:
        """The recorded intents of these users (those without one are left out)."""
        ...

    def delete_create_intents(self, entra_ids: Iterable[str]) -> None:
        """Absent ids are ignored."""
        ...

    def claim(self, key: str, owner: str, ttl_seconds: float) -> bool:
        """Take a short lease on key (e.g. an Entra id) for owner; False while someone else holds an
        unexpired lease. Used so two concurrent messages for one user never create two Salesforce users."""
        ...

    def release(self, key: str, owner: str) -> None:
        ...

    def record_failure(self, failure: FailureRecord) -> None:
        ...

    def get_failure(self, message_id: str) -> FailureRecord | None:
        ...

    def delete_failure(self, message_id: str) -> None:
        """Forget a failure once it was reported, so a replayed message is processed afresh."""
        ...

    # accidental-deletion prevention (shared/services/safety.py)
    def reserve_deactivations(self, wanted: int, limit: int, window_seconds: float) -> int:
        """Atomically across workers: how many of `wanted` deactivations fit under `limit` together with
        those reserved in the last window_seconds (to the minute); the granted ones are counted now."""
        ...

    def count_active_links(self) -> int:
        """Links whose last outcome is not a deactivation: the users this app keeps active."""
        ...

    def held_deactivations(self) -> list[HeldDeactivation]:
        ...

    def put_held_deactivations(self, held: Sequence[HeldDeactivation]) -> None:
        """Insert or replace, keyed by Entra id."""
        ...

    def delete_held_deactivations(self, entra_ids: Iterable[str]) -> None:
        """Absent ids are ignored."""
        ...

    # quarantine (shared/services/quarantine.py)
    def record_outcomes(self, succeeded: int, failed: int, window_seconds: float) -> tuple[int, int]:
        """Atomically across workers: add a batch's counted Salesforce outcomes to a rolling window
        (to the minute); the totals (succeeded, failed) of the last window_seconds, these included."""
        ...

    def clear_outcomes(self) -> None:
        """Forget the window (quarantine lifted: old failures must not quarantine again)."""
        ...

    def get_quarantine(self) -> QuarantineStatus | None:
        ...

    def put_quarantine(self, status: QuarantineStatus | None) -> None:
        """Replace the one quarantine record; None deletes it."""
        ...

    # escrow: users retried on a schedule after failing for good (shared/services/escrow.py)
    def escrows(self) -> list[EscrowEntry]:
        """Every entry, in no particular order (the escrow is small: users failing right now)."""
        ...

    def get_escrow(self, entra_id: str) -> EscrowEntry | None:
        ...

    def put_escrow(self, entry: EscrowEntry) -> None:
        """Insert or replace, keyed by Entra id."""
        ...

    def delete_escrows(self, entra_ids: Iterable[str]) -> None:
        """Absent ids are ignored."""
        ...


class SubscriptionApi(Protocol):
    """Graph /subscriptions (change notifications)."""

    async def create(self, request: SubscriptionRequest, expires: datetime) -> GraphSubscription: ...

    async def renew(self, subscription_id: str, expires: datetime) -> GraphSubscription | None:
        """None when Graph no longer has the subscription (404)."""
        ...

    async def reauthorize(self, subscription_id: str) -> bool:
        """False when Graph no longer has the subscription (404)."""
        ...

    async def delete(self, subscription_id: str) -> None: ...
