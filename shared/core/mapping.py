"""Entra user → Salesforce User fields.

A mapping is a list of `FieldMapping`s, each computing one Salesforce field from the user's Entra state.
`default_salesforce_mapping()` reproduces the defaults of Entra's built-in Salesforce connector (see
the README's table); a declarative mapping file can replace it without touching the rest of the engine.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Collection, Literal, Mapping, Sequence

from .errors import PermanentError
from .expressions import DROPPED, Expression, parse_expression
from .models import DEFAULT_ACCESS_ROLE_ID, AppRole, EntraUser, SalesforceRole, selectable
from .permission_sets import PermissionSetMapping
from .scoping import ScopingFilters

# ProfileName and UserRoleName are not Salesforce fields: the engine resolves them to ProfileId and
# UserRoleId, each with one cached query.
PROFILE_NAME = "ProfileName"
USER_ROLE_NAME = "UserRoleName"
_RESOLVED = {PROFILE_NAME: "ProfileId", USER_ROLE_NAME: "UserRoleId"}


@dataclass(frozen=True, slots=True)
class MappingInput:
    """Everything an expression may read: the user's Entra attributes and its resolved profile name.

    `is_unique(field, value)` answers SelectUniqueValue; None takes its first non-empty candidate."""

    user: EntraUser
    role_names: tuple[str, ...]
    is_unique: Callable[[str, Any], bool] | None = None
    now: datetime | None = None  # what Now() returns; None: the time of the evaluation


@dataclass(frozen=True, slots=True)
class FieldMapping:
    target: str
    compute: Callable[[MappingInput], Any]
    source_attributes: tuple[str, ...] = ()
    default: Any = None
    apply: Literal["always", "on-create"] = "always"
    matching_priority: int | None = None
    # SelectUniqueValue fields: the candidates in order, so the engine can ask the org which are taken
    # (all of them in one query per batch) before `compute` picks one through MappingInput.is_unique.
    unique_candidates: Callable[[MappingInput], tuple[Any, ...]] | None = None


def expression_field(target: str, expression: Expression, *, default: Any = None,
                     apply: Literal["always", "on-create"] = "always", matching_priority: int | None = None
                     ) -> FieldMapping:
    """A field computed by a connector expression."""
    return FieldMapping(
        target,
        lambda s: expression.evaluate(s, target=target, is_unique=s.is_unique),
        expression.attributes,
        default,
        apply,
        matching_priority,
        expression.candidates if expression.selects_unique_value else None,
    )


@dataclass(frozen=True, slots=True)
class AttributeMapping:
    """The whole mapping of one deployment, with the scoping filters that decide who is in scope and
    the Entra groups that grant Salesforce permission sets."""

    fields: tuple[FieldMapping, ...]
    scoping: ScopingFilters = ScopingFilters()
    permission_sets: PermissionSetMapping = PermissionSetMapping()

    @property
    def matching_fields(self) -> tuple[str, ...]:
        """The matching attributes in matching precedence order (priority 1 first)."""
        ranked = sorted((f for f in self.fields if f.matching_priority is not None), key=lambda f: f.matching_priority)
        return tuple(f.target for f in ranked)

    @property
    def matching_field(self) -> str:
        return self.matching_fields[0]

    @property
    def source_attributes(self) -> tuple[str, ...]:
        """The Graph properties to $select: what the mapping reads, plus what scoping needs."""
        names = {"id", "accountEnabled", "userPrincipalName", *map(selectable, self.scoping.attributes)}
        for f in self.fields:
            names.update(map(selectable, f.source_attributes))
        return tuple(sorted(names))

    @property
    def salesforce_fields(self) -> tuple[str, ...]:
        """Salesforce fields to read when matching and comparing."""
        names = {"Id", "Username", "IsActive", "ProfileId", "Email"}
        names.update(_RESOLVED.get(f.target, f.target) for f in self.fields)
        return tuple(sorted(names))

    @property
    def unique_fields(self) -> tuple[FieldMapping, ...]:
        """The fields whose value SelectUniqueValue picks (create-only by validation)."""
        return tuple(f for f in self.fields if f.unique_candidates is not None)

    def apply(self, source: MappingInput, *, only: Collection[str] | None = None) -> dict[str, Any]:
        """Compute every mapped field (or those named in `only`). Empty strings count as missing so
        defaults apply."""
        out: dict[str, Any] = {}
        for f in self.fields:
            if only is not None and f.target not in only:
                continue
            value = f.compute(source)
            if value is DROPPED:  # IgnoreFlowIfNullOrEmpty: not sent at all, not even a default
                continue
            if value is None or value == "":
                value = f.default
            if value is not None:
                out[f.target] = value
        return out

    @property
    def defaults(self) -> dict[str, Any]:
        """Target field → the value used when the source is empty."""
        return {f.target: f.default for f in self.fields if f.default is not None}

    def create_only_fields(self) -> frozenset[str]:
        return frozenset(f.target for f in self.fields if f.apply == "on-create")


def _attr(name: str) -> Callable[[MappingInput], Any]:
    return lambda s: s.user.get(name)


def _unique_candidates(*candidates: str) -> str:
    return "SelectUniqueValue(\n    " + ",\n    ".join(candidates) + ")"


# Letters and digits of the first initial and the surname, lower case, accents removed: "Seán O'Brien" → sobrien.
_INITIAL_SURNAME = ('ToLower(Replace(NormalizeDiacritics(Join("", Left([givenName], 1), [surname])), , '
                    '"[^A-Za-z0-9]", , "", , ))')
_UPN_LOCAL_PART = 'Word([userPrincipalName], 1, "@")'

# Alias (8 characters): the initial and surname, then the same with a digit 1-9, then the UPN's first
# 8 characters (the connector's default), then the Entra object id's first 8 (practically unique).
ALIAS_EXPRESSION = _unique_candidates(
    f"Left({_INITIAL_SURNAME}, 8)",
    *(f'Append(Left({_INITIAL_SURNAME}, 7), "{n}")' for n in range(1, 10)),
    "Mid([userPrincipalName], 1, 8)",
    "Left([id], 8)",
)
# CommunityNickname (40 characters, unique in the org, what Salesforce itself derives when omitted):
# the UPN's local part, then with the object id's first 8 characters, then with the whole object id.
COMMUNITY_NICKNAME_EXPRESSION = _unique_candidates(
    f"Left({_UPN_LOCAL_PART}, 40)",
    f'Join(".", Left({_UPN_LOCAL_PART}, 31), Left([id], 8))',
    f'Join(".", Left({_UPN_LOCAL_PART}, 3), [id])',
)


def _single_role(s: MappingInput) -> str | None:
    return s.role_names[0] if s.role_names else None


def default_salesforce_mapping() -> AttributeMapping:
    """The connector's default mapping for Salesforce (Graph docs' objectMapping for salesforce.com),
    with Alias and CommunityNickname chosen unique in the org by SelectUniqueValue on create."""
    return AttributeMapping(
        fields=(
            # The connector maps [userPrincipalName]; Salesforce wants usernames in lower case. Expressions,
            # as in config/mapping.default.toml, so a value of the wrong type is a clear error, not a crash.
            expression_field("Username", parse_expression("ToLower([userPrincipalName])"), matching_priority=1),
            expression_field("Alias", parse_expression(ALIAS_EXPRESSION), apply="on-create"),
            expression_field("CommunityNickname", parse_expression(COMMUNITY_NICKNAME_EXPRESSION), apply="on-create"),
            FieldMapping("Email", _attr("mail"), ("mail",)),
            FieldMapping("FirstName", _attr("givenName"), ("givenName",)),
            FieldMapping("LastName", _attr("surname"), ("surname",), default="."),
            expression_field("LocaleSidKey", parse_expression('Replace([preferredLanguage], "-", , , "_", , )'),
                             default="en_US"),
            FieldMapping(PROFILE_NAME, _single_role, default="Chatter Free User"),
            FieldMapping("EmailEncodingKey", lambda s: None, default="ISO-8859-1"),
            FieldMapping("LanguageLocaleKey", lambda s: None, default="en_US"),
            FieldMapping("TimeZoneSidKey", lambda s: None, default="America/Los_Angeles"),
        )
    )


def map_user(mapping: AttributeMapping, user: EntraUser, app_role_ids: frozenset[str], roles: Mapping[str, AppRole],
             profile_priority: Sequence[str]) -> tuple[MappingInput, dict[str, Any]]:
    """One in-scope user through the mapping: what its expressions read (roles resolved by
    `profile_priority`) and the mapped fields. ProfileName and UserRoleName are still names here; the
    engine resolves them against the org, then converts picklist values (normalize_picklists)."""
    source = MappingInput(user, resolve_role_names(app_role_ids, roles, profile_priority))
    return source, mapping.apply(source)


def resolve_role_names(
    app_role_ids: frozenset[str], roles: Mapping[str, AppRole], priority: Sequence[str]
) -> tuple[str, ...]:
    """The profile names of the user's assigned app roles, Default Access excluded.

    Several different roles are resolved by `priority` (profile names, highest first); without a
    priority that covers them it is an error, as with the connector's SingleAppRoleAssignment."""
    names = sorted({roles[r].display_name for r in app_role_ids if r != DEFAULT_ACCESS_ROLE_ID and r in roles})
    if len(names) <= 1:
        return tuple(names)
    ranked = [p for p in priority if p in names]
    if ranked:
        return (ranked[0],)
    raise PermanentError(
        "AmbiguousAppRoleAssignment",
        f"user has {len(names)} different Salesforce app roles ({', '.join(names)}) and no profile priority "
        "ranks them; set PROFILE_PRIORITY or keep one role per user",
        system="mapping",
    )


def user_role_id(name: str, roles: Sequence[SalesforceRole]) -> str:
    """The Id of the Salesforce role a mapping names, by its Name or its DeveloperName. An unknown
    name, or a Name several roles share (Salesforce allows that; DeveloperName is unique), is an error."""
    found = {role.id: role for role in roles if name in (role.name, role.developer_name)}
    if len(found) == 1:
        return next(iter(found))
    if not found:
        raise PermanentError("UserRoleNotFound", f"no Salesforce role named {name!r} (by Name or DeveloperName)",
                             system="mapping")
    developer_names = ", ".join(sorted(role.developer_name for role in found.values()))
    raise PermanentError("AmbiguousUserRole", f"{len(found)} Salesforce roles are named {name!r}; map one of their "
                         f"DeveloperNames instead ({developer_names})", system="mapping")


def fields_hash(fields: Mapping[str, Any]) -> str:
    """A stable digest of what was applied, stored on the link."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:32]
