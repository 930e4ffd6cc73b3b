"""After the run: is Salesforce where the mapping says it should be, and was every failure reported?

Expected values come from the emulator's final Entra state through the product's own mapping code
(`out_of_scope_reason`, `map_user`, `normalize_picklists`), never from what the app stored; profile
and role names are resolved against the org. Fields set on create only (Alias, CommunityNickname,
picked unique by SelectUniqueValue) are not compared. Findings name object ids and field names only."""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from cli.local_stack import QUEUE, LocalStack
from shared.core.errors import PermanentError, ProvisioningError
from shared.core.mapping import PROFILE_NAME, USER_ROLE_NAME, AttributeMapping, map_user
from shared.core.models import AppRole, EntraUser, EntraUserState, FailureRecord
from shared.core.planning import out_of_scope_reason
from shared.core.salesforce_rules import normalize_picklists

DIGEST_SUBJECT = re.compile(r"^Salesforce provisioning: \d+ failures? \(")
QUARANTINE_SUBJECT = "Salesforce provisioning quarantined:"
_SECTION = re.compile(r"^== (\S+) \(")
_MESSAGE = re.compile(r"^  message (\S+), at ")
_USER = re.compile(r"^- user (\S+): ")


@dataclass
class Findings:
    users: int = 0
    in_scope: int = 0
    converged: int = 0
    failed_reported: int = 0  # in scope, not converged, its permanent failure dead-lettered and emailed
    lost: list[str] = field(default_factory=list)  # in scope, neither converged nor reported
    out_of_scope_active: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # Entra users with more than one Salesforce user
    deleted: list[str] = field(default_factory=list)  # Salesforce users that existed once and are gone
    dead_lettered: Counter[str] = field(default_factory=Counter)  # original reason → messages
    dead_letter_problems: list[str] = field(default_factory=list)
    emails: int = 0
    quarantines: int = 0  # quarantine alerts sent (the app stopped calling Salesforce for a while)

    @property
    def converged_percent(self) -> float:
        return round(100.0 * self.converged / self.in_scope, 2) if self.in_scope else 100.0

    def problems(self) -> list[str]:
        """Everything that breaks the promise, one line each (empty when the run converged)."""
        return ([f"lost: {x}" for x in self.lost] + [f"out of scope but active: {x}" for x in self.out_of_scope_active]
                + [f"duplicate: {x}" for x in self.duplicates] + [f"deleted: {x}" for x in self.deleted]
                + self.dead_letter_problems)


def check(stack: LocalStack, mapping: AttributeMapping, profile_priority: tuple[str, ...], user_ids: Iterable[str],
          usernames_seen: Mapping[str, set[str]], salesforce_ids_seen: set[str],
          failures: Mapping[str, FailureRecord | None], audited: list[dict[str, Any]]) -> Findings:
    """`usernames_seen`: every UPN (lower case) each Entra user had during the run; `failures`: the
    product's recorded failure for each dead-lettered message, read before the digests went out;
    `audited`: the provisioning log of every worker."""
    found = Findings()
    org, tenant = stack.org, stack.tenant
    salesforce_users = org.users()
    by_username: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for sf in salesforce_users:
        by_username[sf["Username"].casefold()].append(sf)
    found.deleted = sorted(salesforce_ids_seen - {sf["Id"] for sf in salesforce_users})
    found.deleted += [f"{n} DELETE calls" for n in [org.calls.by_kind.get("user_delete", 0)] if n]
    digests = _digest_entries(stack)
    found.emails = len({index for index, _, _, _ in digests})
    found.quarantines = sum(1 for mail in stack.graph.outbox if mail.subject.startswith(QUARANTINE_SUBJECT))
    reported = {entra_id for _, _, entra_id, _ in digests}
    _check_dead_letters(stack, failures, audited, digests, found)

    sp = tenant.service_principal(stack.demo.service_principal_id)
    roles = {r.id: AppRole(r.id, r.display_name, r.value, r.is_enabled) for r in sp.app_roles}
    references = {name: {r["Name"]: r["Id"] for r in org.query(f"SELECT Id, Name FROM {sobject}")[1]}
                  for name, sobject in ((PROFILE_NAME, "Profile"), (USER_ROLE_NAME, "UserRole"))}
    create_only = mapping.create_only_fields()
    for entra_id in user_ids:
        found.users += 1
        user = tenant.find_user(entra_id)
        names = set(usernames_seen.get(entra_id, ()))
        if user is not None:
            names.add(user["userPrincipalName"].lower())
        theirs = [sf for name in sorted(names) for sf in by_username.get(name.casefold(), [])]
        if len(theirs) > 1:
            found.duplicates.append(f"{entra_id} has {len(theirs)} Salesforce users")
        role_ids = frozenset(a.app_role_id for a in tenant.user_app_role_assignments(entra_id)
                             if a.resource_id == sp.id) if user is not None else frozenset()
        state = EntraUserState(entra_id, EntraUser(entra_id, user) if user is not None else None, role_ids)
        scope_reason = out_of_scope_reason(state, mapping.scoping)
        if scope_reason is not None:
            found.out_of_scope_active += [f"{entra_id} ({scope_reason}; sf {sf['Id']})" for sf in theirs
                                          if sf.get("IsActive")]
            continue
        found.in_scope += 1
        unmappable = ""
        try:
            desired = _desired(mapping, state.user, role_ids, roles, profile_priority, references)  # type: ignore[arg-type]
            desired = {k: v for k, v in desired.items() if k not in create_only}
        except ProvisioningError as exc:
            desired, unmappable = None, exc.code  # its failure must have been reported
        differing = _differences(org, theirs[0], desired) if len(theirs) == 1 and desired is not None else None
        if differing == []:
            found.converged += 1
        elif entra_id in reported:
            found.failed_reported += 1
        else:
            why = (f"cannot be mapped ({unmappable}), not reported" if unmappable
                   else f"{len(theirs)} Salesforce users" if len(theirs) != 1
                   else f"fields differ: {', '.join(differing or [])}")
            found.lost.append(f"{entra_id}: {why}")
    return found


def _desired(mapping: AttributeMapping, user: EntraUser, role_ids: frozenset[str], roles: Mapping[str, AppRole],
             profile_priority: tuple[str, ...], references: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    """The Salesforce fields the mapping gives this user, names resolved to the org's ids."""
    _, mapped = map_user(mapping, user, role_ids, roles, profile_priority)
    for name, field_name in ((PROFILE_NAME, "ProfileId"), (USER_ROLE_NAME, "UserRoleId")):
        if name in mapped:
            value = mapped.pop(name)
            if value not in references[name]:
                raise PermanentError("UnknownReference", f"no {name} {value!r} in the org")
            mapped[field_name] = references[name][value]
    return normalize_picklists(mapped, mapping.defaults)[0]


def _differences(org: Any, sf: Mapping[str, Any], desired: Mapping[str, Any]) -> list[str]:
    """Field names whose Salesforce value is not the desired one (an Email change Salesforce holds for
    the owner's confirmation counts as applied)."""
    wrong = [] if sf.get("IsActive") else ["IsActive"]
    for name, value in desired.items():
        current = sf.get(name)
        if name == "Username" and isinstance(current, str) and isinstance(value, str):
            same = current.casefold() == value.casefold()
        elif name == "Email":
            same = value in (current, org.pending_email(sf["Id"]))
        else:
            same = current == value
        if not same:
            wrong.append(name)
    return wrong


def _digest_entries(stack: LocalStack) -> list[tuple[int, str, str, str]]:
    """(email index, code, Entra id, message id) for every failure listed in a digest email."""
    entries = []
    for index, mail in enumerate(stack.graph.outbox):
        if not DIGEST_SUBJECT.match(mail.subject):
            continue
        code = user = ""
        for line in mail.body.splitlines():
            if m := _SECTION.match(line):
                code = m.group(1)
            elif m := _USER.match(line):
                user = m.group(1)
            elif m := _MESSAGE.match(line):
                entries.append((index, code, user, m.group(1)))
    return entries


def _check_dead_letters(stack: LocalStack, failures: Mapping[str, FailureRecord | None], audited: list[dict[str, Any]],
                        digests: list[tuple[int, str, str, str]], found: Findings) -> None:
    """Each dead letter kept its original reason; each user's failure (user and reason: its repeats,
    e.g. a duplicate message, are not mailed again) is in exactly one digest, under that reason; each
    permanent failure the provisioning log recorded was dead-lettered."""
    mailed_in: dict[tuple[str, str], set[int]] = defaultdict(set)
    listed: dict[str, str] = {}
    for index, code, entra_id, message_id in digests:
        mailed_in[(entra_id, code)].add(index)
        listed[message_id] = code
    dead = [m.message_id or "" for m in stack.servicebus.messages_seen(QUEUE, dead_letter=True)]
    for message_id in dead:
        failure = failures.get(message_id)
        if failure is None:
            found.dead_letter_problems.append(f"dead letter {message_id} lost its original reason")
            continue
        found.dead_lettered[failure.code] += 1
        if listed.get(message_id, failure.code) != failure.code:
            found.dead_letter_problems.append(
                f"dead letter {message_id} ({failure.code}) is mailed as {listed[message_id]}")
        emails = mailed_in.get((failure.entra_id, failure.code), set())
        if len(emails) != 1:
            found.dead_letter_problems.append(
                f"failure {failure.code} of {failure.entra_id or 'an unknown user'} is in {len(emails)} digests")
    for record in audited:
        if record.get("kind") == "operation" and record.get("status") == "failure" and record["message_id"] not in dead:
            found.dead_letter_problems.append(
                f"failure {record['error_code']} of {record['entra_id']} (message {record['message_id']}) "
                "was not dead-lettered")
    extra = set(listed) - set(dead)
    found.dead_letter_problems += [f"digest lists message {m}, which was never dead-lettered" for m in sorted(extra)]
