"""A deterministic demo tenant with real-world mess, for the demo, the benchmark and end-to-end tests.

    summary = seed_demo_tenant(tenant, users=1200, seed=7)

Same arguments, same tenant (ids included). The summary says which users are in which population and,
independently of the emulator's code, which Salesforce app roles each live user should end up with
(`expected_roles`), so tests can assert on outcomes rather than on counts alone."""
from __future__ import annotations

import random
import unicodedata
import uuid
from dataclasses import dataclass, field

from .tenant import DEFAULT_ACCESS_ROLE_ID, Tenant

SALESFORCE_APP = "Salesforce"
PROFILE_ROLES = ("Standard User", "Chatter Free User", "System Administrator", "Sales User", "Support User")
DEFAULT_ACCESS = "msiam_access"
NOTIFICATION_SENDER = "provisioning-alerts"

# Group name → the app role it is assigned (None: not assigned, membership alone grants nothing).
GROUP_ROLES = {
    "Sales Team": "Sales User",
    "Support Team": "Support User",
    "Chatter Community": "Chatter Free User",
    "Salesforce Admins": "System Administrator",
    "All Staff": None,
}
NESTED_GROUP = "Sales Contractors"  # a member of "Sales Team"; its members must NOT get Sales User
NESTED_PARENT = "Sales Team"

_GIVEN = ("Anna", "Ben", "Chloé", "Dmitri", "Emma", "François", "Grace", "Hiroshi", "Ines", "Jonas", "Kaito",
          "Lena", "Mårten", "Noah", "Olivia", "Priya", "Quentin", "Rosa", "Søren", "Tomás", "Ulla", "Véronique",
          "Wei", "Xavier", "Yuki", "Zainab", "Björn", "Siobhán", "Nuño", "Élodie")
_SURNAMES = ("Smith", "Müller", "García", "Dubois", "Kowalski", "Tanaka", "Nguyễn", "O'Connor", "Rossi",
             "Johansson", "D'Angelo", "van der Berg", "Öztürk", "Novák", "Silva", "Brown", "Schäfer", "Lefèvre",
             "Wójcik", "Sato", "Murphy", "Ibáñez", "Andersen", "Kim", "Patel", "Fischer", "Moreau", "Costa")
_LANGUAGES = ("en-US", "en-US", "en-US", "en-GB", "de-DE", "fr-FR", "ja-JP", "es-ES", None, None)
_DEPARTMENTS = ("Sales", "Support", "Marketing", "Finance", "Engineering", "Operations")
_TITLES = ("Account Executive", "Support Engineer", "Analyst", "Manager", "Director", "Consultant")

# People whose names are the mess: (givenName, surname, UPN local part or None to derive it).
_NOTABLE = (
    ("José", "Ñúñez", None),
    ("Zoë", "Ångström", None),
    ("Łukasz", "Żółkiewski", None),
    ("Seán", "O'Brien", "o'brien"),
    ("Maximiliana Alexandra Konstantina", "Papadopoulou-Wolfeschlegelsteinhausen", None),  # UPN > 80 chars
    ("Guadalupe Esperanza María de los Ángeles", "Fernández de Córdoba y Montenegro", None),
)


@dataclass(frozen=True)
class DemoTenant:
    """What seed_demo_tenant created. Ids are lower-case object ids."""

    service_principal_id: str
    app_role_ids: dict[str, str]  # role display name → id (msiam_access included)
    group_ids: dict[str, str]  # group name → id (the nested group included)
    user_ids: tuple[str, ...]  # every user created, deleted ones included
    expected_roles: dict[str, frozenset[str]]  # live users with ≥1 role → role ids (direct + direct group)
    disabled_ids: frozenset[str]
    soft_deleted_ids: frozenset[str]
    soft_deleted_roles: dict[str, frozenset[str]]  # what a soft-deleted user gets back on restore
    hard_deleted_ids: frozenset[str]
    two_role_ids: frozenset[str]  # live users holding two different profile roles
    nested_only_ids: frozenset[str]  # members of the nested group only: no role
    default_access_only_ids: frozenset[str]
    unassigned_ids: frozenset[str]
    taken_usernames: tuple[str, ...]  # UPNs already used as a username in another Salesforce org
    notification_sender: str  # UPN of the mailbox that sends failure notices
    messy: dict[str, frozenset[str]] = field(default_factory=dict)  # kind of mess → user ids
    application_id: str = ""  # object id of the app registration behind the service principal

    def describe(self) -> str:
        return (
            f"{len(self.user_ids)} users, {len(self.expected_roles)} with roles "
            f"({len(self.two_role_ids)} with two), {len(self.disabled_ids)} disabled, "
            f"{len(self.soft_deleted_ids)} soft-deleted, {len(self.hard_deleted_ids)} hard-deleted, "
            f"{len(self.nested_only_ids)} only in the nested group, {len(self.unassigned_ids)} unassigned, "
            f"{len(self.taken_usernames)} usernames taken elsewhere"
        )


def seed_demo_tenant(tenant: Tenant, users: int = 1200, seed: int = 7) -> DemoTenant:
    """Populate `tenant` (best empty) and describe what was made. `users` counts the people (at least
    40, so every population has members); the notification mailbox is extra."""
    if users < 40:
        raise ValueError("the demo tenant needs at least 40 users so every population is present")
    rng = random.Random(seed)

    def new_id() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    sp = tenant.add_service_principal(SALESFORCE_APP, id=new_id(), app_id=new_id())
    roles = {name: tenant.add_app_role(sp, name, value=name.replace(" ", ""), id=new_id()) for name in PROFILE_ROLES}
    roles[DEFAULT_ACCESS] = tenant.add_app_role(sp, DEFAULT_ACCESS, id=DEFAULT_ACCESS_ROLE_ID)
    groups = {name: tenant.add_group(name, id=new_id()) for name in (*GROUP_ROLES, NESTED_GROUP)}
    tenant.add_member(groups[NESTED_PARENT], groups[NESTED_GROUP])
    for name, role in GROUP_ROLES.items():
        if role:
            tenant.assign(sp, groups[name], roles[role])

    people, messy = _people(rng, users, tenant.domain)
    ids = [tenant.add_user(id=new_id(), **attributes) for attributes in people]
    messy_ids = {kind: frozenset(ids[i] for i in indexes) for kind, indexes in messy.items()}
    sender = f"{NOTIFICATION_SENDER}@{tenant.domain}"
    tenant.add_user(id=new_id(), userPrincipalName=sender, displayName="Provisioning alerts",
                    mail=sender, mailNickname=NOTIFICATION_SENDER, accountEnabled=True)

    # The notable people get a direct role (and are never picked for deletion), so their mess
    # reaches Salesforce in the demo.
    notable, rest = ids[:len(_NOTABLE)], ids[len(_NOTABLE):]
    rng.shuffle(rest)
    n = len(ids)
    direct_end = max(1, round(n * 0.40))
    order = rest[:direct_end - len(notable)] + notable + rest[direct_end - len(notable):]
    cut = iter(_cuts(n, direct=0.40, sales=0.10, support=0.07, chatter=0.05, admins=0.01, nested=0.02,
                     default=0.03))
    direct, sales, support, chatter, admins, nested, default_only = (order[a:b] for a, b in cut)
    unassigned = order[sum(map(len, (direct, sales, support, chatter, admins, nested, default_only))):]

    granted: dict[str, set[str]] = {}
    weights = (("Standard User", 70), ("Chatter Free User", 12), ("Sales User", 9), ("Support User", 8),
               ("System Administrator", 1))
    for user_id in direct:
        role = rng.choices([r for r, _ in weights], [w for _, w in weights])[0]
        tenant.assign(sp, user_id, roles[role])
        granted.setdefault(user_id, set()).add(roles[role])
    for group, members in (("Sales Team", sales), ("Support Team", support), ("Chatter Community", chatter),
                           ("Salesforce Admins", admins)):
        for user_id in members:
            tenant.add_member(groups[group], user_id)
            granted.setdefault(user_id, set()).add(roles[GROUP_ROLES[group]])  # type: ignore[index]
    for user_id in nested:
        tenant.add_member(groups[NESTED_GROUP], user_id)
    for user_id in default_only:
        tenant.assign(sp, user_id, DEFAULT_ACCESS_ROLE_ID)
        granted.setdefault(user_id, set()).add(DEFAULT_ACCESS_ROLE_ID)
    for user_id in rng.sample(ids, max(1, n // 3)):
        tenant.add_member(groups["All Staff"], user_id)

    # A few people hold two profiles: a second, different direct role, or a group on top of a direct one.
    two_roles = set()
    for user_id in direct[: max(3, n // 100)]:
        current = next(iter(granted[user_id]))
        extra = roles["Support User"] if current != roles["Support User"] else roles["Sales User"]
        tenant.assign(sp, user_id, extra)
        granted[user_id].add(extra)
        two_roles.add(user_id)
    for user_id in direct[max(3, n // 100): max(3, n // 100) + 3]:
        if roles["Sales User"] not in granted[user_id]:
            tenant.add_member(groups["Sales Team"], user_id)
            granted[user_id].add(roles["Sales User"])
            two_roles.add(user_id)

    assigned = [u for u in order if u in granted and u not in two_roles]
    disabled = assigned[: max(2, n // 25)]
    soft_deleted = assigned[len(disabled): len(disabled) + max(2, n // 50)]
    hard_deleted = assigned[len(disabled) + len(soft_deleted): len(disabled) + len(soft_deleted) + max(2, n // 100)]
    for user_id in disabled:
        tenant.update_user(user_id, accountEnabled=False)
    for user_id in soft_deleted:
        tenant.soft_delete_user(user_id)
    for user_id in hard_deleted:
        tenant.hard_delete_user(user_id)

    gone = set(soft_deleted) | set(hard_deleted)
    expected = {u: frozenset(r) for u, r in granted.items() if u not in gone}
    # Users a create would really be attempted for: a profile role, not Default Access alone.
    taken_pool = [u for u in assigned if u not in gone and u not in disabled and granted[u] - {DEFAULT_ACCESS_ROLE_ID}]
    taken = tuple(sorted(tenant.find_user(u)["userPrincipalName"].lower()  # type: ignore[index]
                         for u in taken_pool[-max(2, n // 200):]))
    return DemoTenant(
        service_principal_id=sp,
        app_role_ids=roles,
        group_ids=groups,
        user_ids=tuple(ids),
        expected_roles=expected,
        disabled_ids=frozenset(disabled),
        soft_deleted_ids=frozenset(soft_deleted),
        soft_deleted_roles={u: frozenset(granted[u]) for u in soft_deleted},
        hard_deleted_ids=frozenset(hard_deleted),
        two_role_ids=frozenset(two_roles - gone),
        nested_only_ids=frozenset(nested),
        default_access_only_ids=frozenset(u for u in default_only if u not in gone),
        unassigned_ids=frozenset(unassigned),
        taken_usernames=taken,
        notification_sender=sender,
        messy=messy_ids,
        # Derived, not drawn from rng, so the ids of everything seeded before stay as they were.
        application_id=tenant.add_application(sp, id=str(uuid.uuid5(uuid.UUID(sp), "application"))),
    )


@dataclass(frozen=True)
class DemoChanges:
    """What apply_demo_changes did; `expected_roles` is the demo's oracle after the changes."""

    renamed_ids: frozenset[str]
    email_changed_ids: frozenset[str]
    disabled_ids: frozenset[str]
    soft_deleted_ids: frozenset[str]
    hard_deleted_ids: frozenset[str]
    restored_ids: frozenset[str]
    unassigned_ids: frozenset[str]
    role_changed_ids: frozenset[str]
    hired_ids: frozenset[str]
    expected_roles: dict[str, frozenset[str]]

    def describe(self) -> str:
        parts = {name.removesuffix("_ids").replace("_", " "): len(value)
                 for name, value in vars(self).items() if name.endswith("_ids")}
        return ", ".join(f"{count} {name}" for name, count in parts.items())


def apply_demo_changes(tenant: Tenant, demo: DemoTenant, seed: int = 8) -> DemoChanges:
    """A day in the life after the first sync: renames, an email change, leavers (disabled, soft- and
    hard-deleted), a restore, unassignments, role changes and new hires. Each change touches users
    that hold exactly one direct role, so its expected outcome is unambiguous."""
    rng = random.Random(seed)
    expected = dict(demo.expected_roles)
    sp, roles = demo.service_principal_id, demo.app_role_ids
    candidates = sorted(
        u for u, granted in expected.items()
        if u not in demo.disabled_ids and len(granted) == 1
        and [a.app_role_id for a in tenant.assignments_of(u)] == list(granted)
    )
    per_kind = max(1, len(demo.user_ids) // 100)
    picked = iter(rng.sample(candidates, per_kind * 7))
    renamed, email_changed, disabled, soft, hard, unassigned, role_changed = (
        [next(picked) for _ in range(per_kind)] for _ in range(7))

    for user_id in renamed:
        tenant.update_user(user_id, surname="Married-Name", displayName=f"Renamed {user_id[:8]}")
    for user_id in email_changed:
        local = f"moved.{user_id[:8]}@{tenant.domain}"
        tenant.update_user(user_id, mail=local, userPrincipalName=local)
    for user_id in disabled:
        tenant.update_user(user_id, accountEnabled=False)
    for user_id in soft:
        tenant.soft_delete_user(user_id)
        del expected[user_id]
    for user_id in hard:
        tenant.hard_delete_user(user_id)
        del expected[user_id]
    restored = sorted(demo.soft_deleted_ids)[:1]
    for user_id in restored:
        tenant.restore_user(user_id)
        if demo.soft_deleted_roles[user_id]:
            expected[user_id] = demo.soft_deleted_roles[user_id]
    for user_id in unassigned:
        (assignment,) = tenant.assignments_of(user_id)
        tenant.unassign(assignment.id)
        del expected[user_id]
    for user_id in role_changed:
        (assignment,) = tenant.assignments_of(user_id)
        tenant.unassign(assignment.id)
        new_role = roles["Support User"] if assignment.app_role_id != roles["Support User"] else roles["Sales User"]
        tenant.assign(sp, user_id, new_role)
        expected[user_id] = frozenset({new_role})
    hired = []
    for index in range(per_kind):
        upn = f"new.hire{index + 1}.{seed}@{tenant.domain}"
        user_id = tenant.add_user(userPrincipalName=upn, displayName=f"New Hire {index + 1}", givenName="New",
                                  surname=f"Hire {index + 1}", mail=upn, preferredLanguage="en-US")
        tenant.assign(sp, user_id, roles["Standard User"])
        expected[user_id] = frozenset({roles["Standard User"]})
        hired.append(user_id)
    return DemoChanges(*(frozenset(ids) for ids in (renamed, email_changed, disabled, soft, hard, restored,
                                                     unassigned, role_changed, hired)), expected_roles=expected)


def _cuts(n: int, **fractions: float) -> list[tuple[int, int]]:
    """Consecutive [start, end) slices of n items, at least one item each."""
    spans, start = [], 0
    for fraction in fractions.values():
        size = max(1, round(n * fraction))
        spans.append((start, start + size))
        start += size
    return spans


def _people(rng: random.Random, count: int, domain: str) -> tuple[list[dict], dict[str, list[int]]]:
    """User attributes for `count` people, and which indexes carry which kind of mess."""
    people: list[dict] = []
    messy: dict[str, list[int]] = {kind: [] for kind in
                                   ("accented", "apostrophe", "long_name", "no_mail", "no_surname", "no_given_name",
                                    "no_language")}
    used: set[str] = set()
    for index in range(count):
        if index < len(_NOTABLE):
            given, surname, local = _NOTABLE[index]
        else:
            given, surname, local = rng.choice(_GIVEN), rng.choice(_SURNAMES), None
        local = _unique(local or f"{_ascii(given)}.{_ascii(surname)}", used)
        upn = f"{local}@{domain}"
        attributes = {
            "userPrincipalName": upn,
            "displayName": f"{given} {surname}",
            "givenName": given,
            "surname": surname,
            "mail": upn,
            "mailNickname": local.replace("'", ""),
            "preferredLanguage": rng.choice(_LANGUAGES),
            "department": rng.choice(_DEPARTMENTS),
            "jobTitle": rng.choice(_TITLES),
            "employeeId": f"E{100000 + index}",
            "usageLocation": rng.choice(("US", "DE", "FR", "JP", "GB")),
            "accountEnabled": True,
        }
        roll = rng.random()
        if index >= len(_NOTABLE) and roll < 0.05:
            del attributes["mail"]
            messy["no_mail"].append(index)
        elif index >= len(_NOTABLE) and roll < 0.08:
            del attributes["surname"]
            attributes["displayName"] = given
            messy["no_surname"].append(index)
        elif index >= len(_NOTABLE) and roll < 0.11:
            del attributes["givenName"]
            attributes["displayName"] = surname
            messy["no_given_name"].append(index)
        if attributes["preferredLanguage"] is None:
            del attributes["preferredLanguage"]
            messy["no_language"].append(index)
        if _ascii(given + surname) != (given + surname).lower().replace(" ", ""):
            messy["accented"].append(index)
        if "'" in upn:
            messy["apostrophe"].append(index)
        if len(attributes["displayName"]) >= 60:
            messy["long_name"].append(index)
        people.append(attributes)
    return people, messy


def _ascii(text: str) -> str:
    """Lower-case ASCII for a UPN: accents dropped (Ł and ø have no decomposition, so mapped)."""
    text = text.replace("Ł", "L").replace("ł", "l").replace("Ø", "O").replace("ø", "o").replace("ß", "ss")
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return folded.lower().replace(" ", "")


def _unique(local: str, used: set[str]) -> str:
    candidate, suffix = local, 1
    while candidate in used:
        suffix += 1
        candidate = f"{local}{suffix}"
    used.add(candidate)
    return candidate
