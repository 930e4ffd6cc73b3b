"""An in-memory Salesforce org: profiles, licence pools and users, with the validation rules a real org
applies to User writes. Tests and the demo use it directly; the HTTP server in `server.py` exposes it."""
from __future__ import annotations

import copy
import hmac
import itertools
import re
import threading
import uuid
from collections import Counter, deque
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator, Mapping

from shared.core.salesforce_rules import EMAIL_FORMAT, salesforce_length

from . import soql
from .knobs import CallCounter, Faults
from .permissions import ASSIGNMENT_FIELDS, PERMISSION_SET_FIELDS, PERMISSION_SET_GROUP_FIELDS, PermissionCatalog
from .records import RecordError, salesforce_id
from .schema import (
    FIELD_LABELS,
    PROFILE_FIELDS,
    REQUIRED_ON_CREATE,
    RESTRICTED_PICKLISTS,
    USER_BOOLEAN_FIELDS,
    USER_FIELDS,
    USER_READ_ONLY_FIELDS,
    USER_ROLE_FIELDS,
    USER_STRING_FIELDS,
    canonical_names,
)

_USER_NAMES = canonical_names(USER_FIELDS)
_QUERY_SCHEMA = {
    "User": _USER_NAMES,
    "Profile": canonical_names(PROFILE_FIELDS),
    "UserRole": canonical_names(USER_ROLE_FIELDS),
    "PermissionSet": canonical_names(PERMISSION_SET_FIELDS),
    "PermissionSetGroup": canonical_names(PERMISSION_SET_GROUP_FIELDS),
    "PermissionSetAssignment": canonical_names(ASSIGNMENT_FIELDS),
}


DEFAULT_LICENSES = {"Salesforce": 10, "Chatter Free": 5000}
DEFAULT_PROFILES = {
    "System Administrator": "Salesforce",
    "Standard User": "Salesforce",
    "Read Only": "Salesforce",
    "Chatter Free User": "Chatter Free",
}


class UsernameRegistry:
    """Usernames are unique across every Salesforce org (case-insensitive), inactive users included.
    Share one registry between EmulatedOrg instances to model several orgs; `reserve` pre-seeds names
    taken in some org the tests never see."""

    _ELSEWHERE = "another org"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owners: dict[str, str] = {}

    def reserve(self, *usernames: str) -> None:
        with self._lock:
            for name in usernames:
                self._owners.setdefault(name.casefold(), self._ELSEWHERE)

    def claim(self, username: str, owner: str) -> bool:
        with self._lock:
            return self._owners.setdefault(username.casefold(), owner) == owner

    def release(self, username: str, owner: str) -> None:
        with self._lock:
            if self._owners.get(username.casefold()) == owner:
                del self._owners[username.casefold()]

    def owner_of(self, username: str) -> str | None:
        with self._lock:
            return self._owners.get(username.casefold())


# Profile.UserType, the category of each licence the emulator knows; any other licence is Standard.
LICENSE_USER_TYPES = {"Chatter Free": "CsnOnly", "Customer Community": "CspLitePortal",
                      "Partner Community": "PowerPartner", "Guest User License": "Guest"}


@dataclass(frozen=True)
class Profile:
    id: str
    name: str
    license: str

    def record(self) -> dict[str, Any]:
        return {"Id": self.id, "Name": self.name, "UserLicenseId": None,
                "UserType": LICENSE_USER_TYPES.get(self.license, "Standard")}


@dataclass(frozen=True)
class ConnectedApp:
    consumer_key: str
    consumer_secret: str | None
    certificate_pem: str | None


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


class EmulatedOrg:
    """One org. Every public method is thread-safe (the server runs on its own thread).

    Users are plain dicts keyed by API field name. An Email change is held in `pending_email` until
    `confirm_email`, as Salesforce does; `expire_session` makes the next request(s) fail with
    INVALID_SESSION_ID; `faults` and `calls` are the test knobs and counters, `writes_by_user()` counts
    the creates and updates each user record received."""

    def __init__(
        self,
        *,
        registry: UsernameRegistry | None = None,
        licenses: Mapping[str, int] = DEFAULT_LICENSES,
        profiles: Mapping[str, str] = DEFAULT_PROFILES,
        dev_token: str = "emulator-dev-token",
        daily_api_limit: int = 15000,
        query_page_size: int = 2000,
    ) -> None:
        self.registry = registry or UsernameRegistry()
        self.dev_token = dev_token
        self.daily_api_limit = daily_api_limit
        self.query_page_size = query_page_size
        self.faults = Faults()
        self.calls = CallCounter()
        self._owner = f"org-{uuid.uuid4().hex[:8]}"
        self._lock = threading.RLock()
        self._pod = "5" + uuid.uuid4().hex[:2].upper()
        self._numbers = itertools.count(1)
        self._licenses: dict[str, int] = dict(licenses)
        self._profiles: dict[str, Profile] = {}
        self._roles: dict[str, dict[str, Any]] = {}  # 15-char id → UserRole record
        self._users: dict[str, dict[str, Any]] = {}  # 15-char id → fields
        # Indexes over _users, kept by _store/_reindex so each write is O(1), not a scan of the org.
        self._by_username: dict[str, str] = {}
        self._by_nickname: dict[str, str] = {}
        self._by_federation: dict[str, str] = {}
        self._active_by_license: Counter[str] = Counter()
        self._pending_email: dict[str, str] = {}
        self._record_writes: Counter[str] = Counter()  # 18-char user id → accepted creates and updates
        self._expired_sessions = 0
        self._sessions: set[str] = set()
        # The latest SOQL texts and the Ids each returned, so a test can prove a query matched only what it meant to.
        self.query_log: deque[tuple[str, tuple[str, ...]]] = deque(maxlen=1000)
        self.connected_apps: dict[str, ConnectedApp] = {}
        self._passwords: dict[str, str] = {}  # lower-case username → password + security token
        # Permission sets every new user gets in the same transaction, like an org's record-triggered Flow.
        self.assigned_on_create: list[str] = []
        self.permissions = PermissionCatalog(lambda prefix: salesforce_id(prefix, self._pod, next(self._numbers)), _now)
        for name, license in profiles.items():
            self.add_profile(name, license)

    # -- profiles and licences
    def add_profile(self, name: str, license: str = "Salesforce") -> str:
        with self._lock:
            if license not in self._licenses:
                raise ValueError(f"unknown user licence {license!r}; known: {sorted(self._licenses)}")
            profile = Profile(salesforce_id("00e", self._pod, next(self._numbers)), name, license)
            self._profiles[profile.id[:15]] = profile
            self.permissions.add_permission_set(f"X{profile.id[:15]}", name, profile_id=profile.id)
            return profile.id

    def rename_profile(self, profile_id: str, name: str) -> None:
        with self._lock:
            profile = self._profiles[str(profile_id)[:15]]
            self._profiles[profile.id[:15]] = Profile(profile.id, name, profile.license)

    def delete_profile(self, profile_id: str) -> None:
        """As Setup does: a profile that users still have cannot be deleted."""
        with self._lock:
            key = str(profile_id)[:15]
            if any(str(u["ProfileId"])[:15] == key for u in self._users.values()):
                raise ValueError("a profile assigned to users cannot be deleted")
            del self._profiles[key]

    def add_user_role(self, name: str, developer_name: str | None = None, parent_id: str | None = None) -> str:
        """A role of the hierarchy; DeveloperName defaults to the name without spaces, and must be unique."""
        with self._lock:
            developer_name = developer_name or re.sub(r"\W", "", name)
            if any(r["DeveloperName"] == developer_name for r in self._roles.values()):
                raise ValueError(f"a role with DeveloperName {developer_name!r} already exists")
            role_id = salesforce_id("00E", self._pod, next(self._numbers))
            self._roles[role_id[:15]] = {"Id": role_id, "Name": name, "DeveloperName": developer_name,
                                         "ParentRoleId": parent_id}
            return role_id

    def user_roles_by_name(self) -> dict[str, str]:
        with self._lock:
            return {r["Name"]: r["Id"] for r in self._roles.values()}

    def profile_id(self, name: str) -> str:
        with self._lock:
            return next(p.id for p in self._profiles.values() if p.name == name)

    def set_license_pool(self, license: str, total: int) -> None:
        with self._lock:
            self._licenses[license] = total

    def license_usage(self, license: str) -> tuple[int, int]:
        """(active users holding the licence, pool size)."""
        with self._lock:
            return self._license_used(license), self._licenses[license]

    # -- users: the Python API
    def create_user(self, fields: Mapping[str, Any]) -> str:
        """Create a user as POST sobjects/User would; raises RecordError."""
        with self._lock:
            record = self._checked_fields(fields, creating=True)
            missing = [name for name in REQUIRED_ON_CREATE if record.get(name) in (None, "")]
            if missing:
                raise RecordError("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", tuple(missing))
            record.setdefault("IsActive", True)
            user_id = salesforce_id("005", self._pod, next(self._numbers))
            if not record.get("CommunityNickname"):
                record["CommunityNickname"] = self._generated_nickname(record["Username"])
            self._check_references(record, user_id)
            self._check_license(record, None)
            if not self.registry.claim(record["Username"], self._owner):
                raise _duplicate_username()
            stamp = _now()
            record.update(Id=user_id, CreatedDate=stamp, LastModifiedDate=stamp, SystemModstamp=stamp)
            self._store(record)
            for permission_set_id in self.assigned_on_create:  # as an admin's record-triggered Flow would
                self.permissions.assign({"AssigneeId": user_id, "PermissionSetId": permission_set_id}, record)
            return user_id

    def update_user(self, user_id: str, fields: Mapping[str, Any]) -> None:
        """Update a user as PATCH sobjects/User/{id} would; raises RecordError (NOT_FOUND if no such user)."""
        with self._lock:
            current = self._users.get(str(user_id)[:15])
            if current is None:
                raise RecordError("NOT_FOUND", "The requested resource does not exist")
            changes = self._checked_fields(fields, creating=False)
            cleared = [name for name in REQUIRED_ON_CREATE if name in changes and changes[name] in (None, "")]
            if cleared or ("IsActive" in changes and changes["IsActive"] is None):
                cleared = cleared or ["IsActive"]
                raise RecordError("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(cleared)}]", tuple(cleared))
            merged = {**current, **changes}
            self._check_references(merged, current["Id"])
            self._check_license(merged, current)
            new_username = changes.get("Username")
            if new_username and new_username.casefold() != current["Username"].casefold():
                if not self.registry.claim(new_username, self._owner):
                    raise _duplicate_username()
                self.registry.release(current["Username"], self._owner)
            if "Email" in changes:
                # Salesforce keeps the old address until the new owner confirms it.
                if changes["Email"].casefold() == current["Email"].casefold():
                    self._pending_email.pop(current["Id"][:15], None)
                else:
                    self._pending_email[current["Id"][:15]] = changes["Email"]
                merged["Email"] = current["Email"]
            stamp = _now()
            merged.update(LastModifiedDate=stamp, SystemModstamp=stamp)
            self._store(merged)

    def get_user(self, user_id: str) -> dict[str, Any] | None:
        with self._lock:
            user = self._users.get(str(user_id)[:15])
            return dict(user) if user else None

    def users(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(u) for u in self._users.values()]

    def writes_by_user(self) -> Counter[str]:
        """How many creates and updates each user record took (a composite call counts once per record)."""
        with self._lock:
            return Counter(self._record_writes)

    def pending_email(self, user_id: str) -> str | None:
        with self._lock:
            return self._pending_email.get(user_id[:15])

    def confirm_email(self, user_id: str) -> None:
        """The new owner clicked the verification link: the pending Email takes effect."""
        with self._lock:
            if user_id[:15] not in self._pending_email:
                raise ValueError(f"user {user_id} has no pending email change")
            self._users[user_id[:15]]["Email"] = self._pending_email.pop(user_id[:15])

    def query(self, text: str) -> tuple[str, list[dict[str, Any]]]:
        """Run SOQL; returns (sObject type, rows). Raises soql.SoqlError."""
        parsed = soql.parse(text, _QUERY_SCHEMA)
        with self._lock:
            if parsed.sobject == "User":
                source = list(self._users.values())
            elif parsed.sobject == "UserRole":
                source = list(self._roles.values())
            elif parsed.sobject == "Profile":
                source = [p.record() for p in self._profiles.values()]
            elif parsed.sobject == "PermissionSet":
                source = self.permissions.permission_set_rows()
            elif parsed.sobject == "PermissionSetGroup":
                source = self.permissions.group_rows()
            else:
                source = self.permissions.assignment_rows(list(self._users.values()))
            rows = parsed.run(source)
            self.query_log.append((text, tuple(str(row.get("Id")) for row in rows)))
            return parsed.sobject, rows

    # -- permission sets
    def add_permission_set(self, name: str, label: str | None = None) -> str:
        with self._lock:
            return self.permissions.add_permission_set(name, label)

    def add_permission_set_group(self, developer_name: str, label: str | None = None) -> str:
        with self._lock:
            return self.permissions.add_permission_set_group(developer_name, label)

    def assign_permission_set(self, fields: Mapping[str, Any]) -> str:
        """Create a PermissionSetAssignment as POST sobjects/PermissionSetAssignment would; raises RecordError."""
        with self._lock:
            assignee = self._users.get(str(fields.get("AssigneeId") or "")[:15])
            return self.permissions.assign(fields, assignee)

    def delete_permission_set_assignment(self, assignment_id: str) -> None:
        with self._lock:
            self.permissions.unassign(assignment_id)

    def permission_set_assignments(self, user_id: str) -> list[dict[str, Any]]:
        """The user's explicit assignments (not the implicit one of its profile)."""
        with self._lock:
            return [r for r in self.permissions.assignment_rows([]) if r["AssigneeId"][:15] == user_id[:15]]

    def get_profile(self, profile_id: str) -> dict[str, Any] | None:
        with self._lock:
            profile = self._profiles.get(str(profile_id)[:15])
            return profile.record() if profile else None

    # -- sessions
    def expire_session(self, requests: int = 1) -> None:
        """The next `requests` authenticated requests fail with 401 INVALID_SESSION_ID; after that a
        client that authenticates again (the dev token, or a fresh login) works."""
        with self._lock:
            self._expired_sessions += requests

    def register_connected_app(
        self, consumer_key: str, *, consumer_secret: str | None = None, certificate_pem: str | None = None
    ) -> None:
        """Allow OAuth logins at /services/oauth2/token: client credentials with the secret, JWT bearer
        signed by the key of the certificate (or public key) PEM."""
        with self._lock:
            self.connected_apps[consumer_key] = ConnectedApp(consumer_key, consumer_secret, certificate_pem)

    def set_password(self, username: str, password: str, security_token: str) -> None:
        """Allow SOAP login() for this user: Salesforce checks the password with the token appended."""
        with self._lock:
            self._passwords[username.casefold()] = password + security_token

    def password_login_ok(self, username: str, password_and_token: str) -> bool:
        with self._lock:
            expected = self._passwords.get(username.casefold())
        return (expected is not None and hmac.compare_digest(expected.encode(), password_and_token.encode())
                and self.active_username(username))

    def user_id_of(self, username: str) -> str | None:
        with self._lock:
            key = self._by_username.get(username.casefold())
            return self._users[key]["Id"] if key else None

    @property
    def org_id(self) -> str:
        return salesforce_id("00D", self._pod, 0)

    def issue_session(self) -> str:
        with self._lock:
            token = f"00D{self._pod}!{uuid.uuid4().hex}"
            self._sessions.add(token)
            return token

    def active_username(self, username: str) -> bool:
        with self._lock:
            key = self._by_username.get(username.casefold())
            return key is not None and bool(self._users[key].get("IsActive"))

    def session_is_valid(self, token: str) -> bool:
        with self._lock:
            if token != self.dev_token and token not in self._sessions:
                return False
            if self._expired_sessions:
                self._expired_sessions -= 1
                self.faults.record("session_expired")
                return False
            return True

    # -- all-or-none support for composite/sobjects
    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Hold the org lock; if the block raises, restore users, pending emails and username claims."""
        with self._lock:
            users, pending = copy.deepcopy(self._users), dict(self._pending_email)
            permissions = copy.deepcopy(self.permissions)
            writes = Counter(self._record_writes)
            try:
                yield
            except BaseException:
                self.permissions = permissions
                self._record_writes = writes
                for user in self._users.values():
                    self.registry.release(user["Username"], self._owner)
                for user in users.values():
                    self.registry.claim(user["Username"], self._owner)
                self._users, self._pending_email = users, pending
                self._reindex()
                raise

    # -- rules
    def _checked_fields(self, fields: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
        """Canonical field names, types, lengths, picklists and shapes; raises the first problem."""
        if not isinstance(fields, Mapping):
            raise RecordError("JSON_PARSER_ERROR", "A User record must be a JSON object")
        record: dict[str, Any] = {}
        for raw_name, value in fields.items():
            if raw_name == "attributes":
                continue
            name = _USER_NAMES.get(str(raw_name).lower())
            if name is None:
                raise RecordError("INVALID_FIELD", f"No such column '{raw_name}' on sobject of type User", (str(raw_name),))
            if name in USER_READ_ONLY_FIELDS:
                if creating and name == "Id":
                    raise RecordError("INVALID_FIELD", "cannot specify Id in an insert call", ("Id",))
                raise RecordError(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {name}. Please check the security settings of this field "
                    "and verify that it is read/write for your profile or permission set.",
                    (name,),
                )
            record[name] = _typed(name, value)
        for name, value in record.items():
            if isinstance(value, str) and salesforce_length(value) > USER_STRING_FIELDS.get(name, 10**9):
                raise RecordError(
                    "STRING_TOO_LONG",
                    f"{FIELD_LABELS.get(name, name)}: data value too large: {value[:40]} (max length={USER_STRING_FIELDS[name]})",
                    (name,),
                )
            if name in RESTRICTED_PICKLISTS and value not in (None, "") and value not in RESTRICTED_PICKLISTS[name]:
                raise RecordError(
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    f"{FIELD_LABELS[name]}: bad value for restricted picklist field: {value}",
                    (name,),
                )
        username = record.get("Username")
        if username and not EMAIL_FORMAT.match(username):
            raise RecordError(
                "FIELD_INTEGRITY_EXCEPTION",
                "Username must be in the form of an email address (for example, john@acme.com): Username",
                ("Username",),
            )
        email = record.get("Email")
        if email and not EMAIL_FORMAT.match(email):
            raise RecordError("INVALID_EMAIL_ADDRESS", f"Email: invalid email address: {email}", ("Email",))
        return record

    def _check_references(self, record: Mapping[str, Any], user_id: str) -> None:
        if str(record["ProfileId"])[:15] not in self._profiles:
            raise RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
        role = record.get("UserRoleId")
        if role and str(role)[:15] not in self._roles:
            raise RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", ("UserRoleId",))
        manager = record.get("ManagerId")
        if manager and str(manager)[:15] not in self._users:
            raise RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", ("ManagerId",))
        own = user_id[:15]
        if self._by_username.get(record["Username"].casefold(), own) != own:
            raise _duplicate_username()
        nickname = record.get("CommunityNickname")
        if nickname and self._by_nickname.get(nickname.casefold(), own) != own:
            raise RecordError(
                "DUPLICATE_COMM_NICKNAME",
                "Duplicate Nickname.<br>Another user has already selected this nickname.<br>Please select another.",
                ("CommunityNickname",),
            )
        federation = record.get("FederationIdentifier")
        clash = self._by_federation.get(federation, own) if federation else own
        if clash != own:
            raise RecordError(
                "DUPLICATE_VALUE",
                f"This Federation ID is already in use. Use a different Federation ID.: SAML Federation ID "
                f"(duplicates value on record with id: {self._users[clash]['Id']})",
                ("FederationIdentifier",),
            )

    def _check_license(self, record: Mapping[str, Any], current: Mapping[str, Any] | None) -> None:
        """An active user holds its profile's licence; activating or moving to another licence needs a free one."""
        if not record.get("IsActive"):
            return
        license = self._profiles[str(record["ProfileId"])[:15]].license
        if current is not None and current.get("IsActive"):
            if self._profiles[str(current["ProfileId"])[:15]].license == license:
                return
        if self._license_used(license) >= self._licenses[license]:
            raise RecordError("LICENSE_LIMIT_EXCEEDED", "License Limit Exceeded")

    def _license_used(self, license: str) -> int:
        return self._active_by_license[license]

    def _generated_nickname(self, username: str) -> str:
        base = username.split("@", 1)[0][:30]
        candidates = (base if n == 0 else f"{base}{n}" for n in itertools.count())
        return next(c for c in candidates if c.casefold() not in self._by_nickname)

    def _store(self, record: dict[str, Any]) -> None:
        key = record["Id"][:15]
        self._unindex(self._users.get(key))
        record["Name"] = " ".join(p for p in (record.get("FirstName"), record.get("LastName")) if p)
        self._users[key] = record
        self._record_writes[record["Id"]] += 1
        self._index(record)

    def _index(self, user: dict[str, Any]) -> None:
        key = user["Id"][:15]
        self._by_username[user["Username"].casefold()] = key
        if user.get("CommunityNickname"):
            self._by_nickname[user["CommunityNickname"].casefold()] = key
        if user.get("FederationIdentifier"):
            self._by_federation[user["FederationIdentifier"]] = key
        if user.get("IsActive"):
            self._active_by_license[self._profiles[user["ProfileId"][:15]].license] += 1

    def _unindex(self, user: dict[str, Any] | None) -> None:
        if user is None:
            return
        self._by_username.pop(user["Username"].casefold(), None)
        self._by_nickname.pop((user.get("CommunityNickname") or "").casefold(), None)
        self._by_federation.pop(user.get("FederationIdentifier") or "", None)
        if user.get("IsActive"):
            self._active_by_license[self._profiles[user["ProfileId"][:15]].license] -= 1

    def _reindex(self) -> None:
        self._by_username, self._by_nickname, self._by_federation = {}, {}, {}
        self._active_by_license = Counter()
        for user in self._users.values():
            self._index(user)


def _typed(name: str, value: Any) -> Any:
    """Salesforce accepts JSON numbers for text fields; other mismatches are refused."""
    if value is None:
        return None
    if name in USER_BOOLEAN_FIELDS:
        if isinstance(value, bool):
            return value
    elif isinstance(value, str):
        return value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise RecordError(
        "INVALID_TYPE_ON_FIELD_IN_RECORD", f"{name}: value not of required type: {value!r}", (name,)
    )


def _duplicate_username() -> RecordError:
    return RecordError(
        "DUPLICATE_USERNAME",
        "Duplicate Username.<br>The username already exists in this or another Salesforce organization. "
        "Usernames must be unique across all Salesforce organizations. To resolve, use a different username "
        "(it doesn't need to match the user's email address). ",
        ("Username",),
    )
