"""A declarative mapping file (TOML) → an AttributeMapping with its scoping filters.

    [fields.Alias]                      # the Salesforce field (custom fields: Something__c)
    type = "Expression"                 # Direct | Constant | Expression | None
    expression = "Mid([userPrincipalName], 1, 8)"
    default = "user"                    # used when the value is null or empty
    apply = "always"                    # always | on-create
    matching_priority = 1               # matching attributes, 1 tried first

    [[scoping.filter]]                  # clauses ANDed, filters ORed
    clause = [ { attribute = "department", operator = "EQUALS", value = "Sales" } ]

    [[permission_sets.group]]           # Entra group → Salesforce permission sets (permission_sets.py)
    group_id = "<group object id>"
    permission_sets = ["Sales_Ops"]
    permission_set_groups = ["Support_Agents"]

Direct takes `source` (a Graph user property), Constant `value`, Expression `expression`; None has
no source, so only its default is sent. A source, an expression's [attribute] and a scoping clause's
attribute may be a dotted path into a complex property (employeeOrgData.division,
onPremisesExtensionAttributes.extensionAttribute1); Graph is asked for the whole property. SelectUniqueValue
needs apply = "on-create" and no matching_priority. Loading checks everything and raises one ConfigurationError
listing every problem with the field it belongs to (expressions with line and column).
config/mapping.default.toml is the connector's Salesforce defaults in this format.
"""
from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Callable

from .errors import ConfigurationError
from .expressions import APP_ROLE_ASSIGNMENTS, ExpressionError, parse_expression
from .mapping import (
    PROFILE_NAME,
    USER_ROLE_NAME,
    AttributeMapping,
    FieldMapping,
    MappingInput,
    default_salesforce_mapping,
    expression_field,
)
from .models import PROPERTY_PATH
from .permission_sets import parse_permission_sets
from .scoping import ScopingFilter, ScopingFilters, scoping_clause

MAPPING_TYPES = ("Direct", "Constant", "Expression", "None")
_KEYS = {"type", "source", "value", "expression", "default", "apply", "matching_priority"}
_NEEDS = {"Direct": "source", "Constant": "value", "Expression": "expression"}
_FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# Fields the engine sets itself: IsActive follows scope, ProfileId comes from ProfileName, Id is Salesforce's.
_ENGINE_FIELDS = {"Id": "Salesforce assigns it", "IsActive": "scope decides it (out of scope deactivates)",
                  "ProfileId": f"map {PROFILE_NAME} instead; the engine resolves it to ProfileId"}
_SCALAR = (str, int, float, bool)


def configured_mapping(mapping_file: str, root: Path) -> AttributeMapping:
    """The MAPPING_FILE setting's mapping (a relative path is read from `root`, the app's root), or
    the connector's built-in default when the setting is empty."""
    if not mapping_file.strip():
        return default_salesforce_mapping()
    path = Path(mapping_file.strip())
    return load_mapping_file(path if path.is_absolute() else root / path)


def load_mapping_file(path: str | Path) -> AttributeMapping:
    """Read and validate a mapping file; ConfigurationError names the file and every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"mapping file {path}: cannot read it ({exc.strerror})") from None
    return parse_mapping(text, origin=str(path))


def parse_mapping(text: str, *, origin: str = "mapping") -> AttributeMapping:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{origin}: not valid TOML: {exc}") from None
    problems: list[str] = []
    problems += [f"unknown top-level key {k!r} (expected fields, scoping, permission_sets)" for k in document
                 if k not in ("fields", "scoping", "permission_sets")]
    fields = _fields(document.get("fields"), problems)
    scoping = _scoping(document.get("scoping", {}), problems)
    permission_sets = parse_permission_sets(document.get("permission_sets", {}), problems)
    if problems:
        raise ConfigurationError(f"{origin}: {len(problems)} problem(s): " + " | ".join(problems))
    return AttributeMapping(fields=fields, scoping=scoping, permission_sets=permission_sets)


def _fields(table: Any, problems: list[str]) -> tuple[FieldMapping, ...]:
    if not isinstance(table, dict) or not table:
        problems.append("no [fields.<SalesforceField>] tables: the mapping maps nothing")
        return ()
    out: list[FieldMapping] = []
    priorities: dict[Any, str] = {}
    for target, spec in table.items():
        before = len(problems)
        field = _field(target, spec, lambda m, t=target: problems.append(f"fields.{t}: {m}"))
        if field is not None and len(problems) == before:
            out.append(field)
        priority = spec.get("matching_priority") if isinstance(spec, dict) else None
        if priority is None:
            continue
        if priority in priorities:
            problems.append(f"fields.{target}: matching_priority {priority} is also {priorities[priority]}'s; "
                            "priorities must differ")
        priorities.setdefault(priority, target)
    if USER_ROLE_NAME in table and "UserRoleId" in table:
        problems.append(f"fields.{USER_ROLE_NAME} and fields.UserRoleId both set the user's role; keep one "
                        f"({USER_ROLE_NAME} takes a role name, UserRoleId an id)")
    if not any(isinstance(spec, dict) and "matching_priority" in spec for spec in table.values()):
        problems.append("no field has a matching_priority: at least one matching attribute is needed "
                        "(the connector's default is Username, priority 1)")
    return tuple(out)


def _field(target: str, spec: Any, problem: Callable[[str], None]) -> FieldMapping | None:
    if not _FIELD_NAME.fullmatch(target):
        problem("not a Salesforce field API name")
    if target in _ENGINE_FIELDS:
        problem(f"cannot be mapped: {_ENGINE_FIELDS[target]}")
    if not isinstance(spec, dict):
        problem("must be a table with a type")
        return None
    for key in sorted(set(spec) - _KEYS):
        problem(f"unknown key {key!r} (expected {', '.join(sorted(_KEYS))})")
    kind = spec.get("type")
    if kind not in MAPPING_TYPES:
        problem(f"type must be one of {', '.join(MAPPING_TYPES)}, got {kind!r}")
        return None
    for key in ("source", "value", "expression"):
        if key in spec and _NEEDS.get(kind) != key:
            problem(f"{key!r} does not belong to a {kind} mapping")
    apply = spec.get("apply", "always")
    if apply not in ("always", "on-create"):
        problem(f"apply must be 'always' or 'on-create', got {apply!r}")
    default = spec.get("default")
    if default is not None and not isinstance(default, _SCALAR):
        problem("default must be a string, number or boolean")
    priority = spec.get("matching_priority")
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int) or priority < 1):
        problem(f"matching_priority must be a whole number from 1, got {priority!r}")

    needed = _NEEDS.get(kind)
    if needed and needed not in spec:
        problem(f"a {kind} mapping needs {needed!r}")
        return None
    if kind == "None" and default is None:
        problem("a None mapping without a default sends nothing; give it a default or remove it")
    if kind == "Expression":
        return _expression_field(target, spec["expression"], default, apply, priority, problem)
    compute, sources = _compute(kind, spec.get(needed) if needed else None, problem)
    if compute is None:
        return None
    return FieldMapping(target, compute, sources, default, apply, priority)


def _compute(kind: str, spec: Any, problem: Callable[[str], None]
             ) -> tuple[Callable[[MappingInput], Any] | None, tuple[str, ...]]:
    if kind == "None":
        return (lambda s: None), ()
    if kind == "Constant":
        if not isinstance(spec, _SCALAR):
            problem("value must be a string, number or boolean")
            return None, ()
        return (lambda s: spec), ()
    if not isinstance(spec, str):
        problem("source must be a string")
        return None, ()
    if not PROPERTY_PATH.fullmatch(spec) or spec == APP_ROLE_ASSIGNMENTS:
        problem(f"source {spec!r} is not a Graph user property (use an Expression for "
                f"SingleAppRoleAssignment([{APP_ROLE_ASSIGNMENTS}]))")
        return None, ()
    return (lambda s: s.user.get(spec)), (spec,)


def _expression_field(target: str, text: Any, default: Any, apply: Any, priority: Any,
                      problem: Callable[[str], None]) -> FieldMapping | None:
    if not isinstance(text, str):
        problem("expression must be a string")
        return None
    try:
        expression = parse_expression(text)
    except ExpressionError as exc:
        problem(f"expression {exc}")
        return None
    if expression.selects_unique_value:
        # As the connector documents: SelectUniqueValue is for creating entries, never for matching.
        if priority is not None:
            problem("SelectUniqueValue cannot be used on a matching attribute")
        if apply != "on-create":
            problem('SelectUniqueValue picks a value when the user is created: set apply = "on-create"')
    return expression_field(target, expression, default=default, apply=apply, matching_priority=priority)


def _scoping(table: Any, problems: list[str]) -> ScopingFilters:
    if not isinstance(table, dict):
        problems.append("scoping must be a table holding [[scoping.filter]] entries")
        return ScopingFilters()
    problems += [f"scoping: unknown key {k!r} (expected filter)" for k in table if k != "filter"]
    entries = table.get("filter", [])
    if not isinstance(entries, list):
        problems.append("scoping.filter must be an array of tables: write [[scoping.filter]]")
        return ScopingFilters()
    filters: list[ScopingFilter] = []
    for n, entry in enumerate(entries, 1):
        where = f"scoping.filter #{n}"
        clauses = entry.get("clause") if isinstance(entry, dict) else None
        if not isinstance(clauses, list) or not clauses:
            problems.append(f"{where}: needs clause = [ {{ attribute = …, operator = …, value = … }}, … ]")
            continue
        built = []
        for m, clause in enumerate(clauses, 1):
            if not isinstance(clause, dict):
                problems.append(f"{where} clause #{m}: must be a table")
                continue
            unknown = set(clause) - {"attribute", "operator", "value"}
            if unknown:
                problems.append(f"{where} clause #{m}: unknown key(s) {', '.join(sorted(unknown))}")
            try:
                built.append(scoping_clause(clause.get("attribute"), clause.get("operator"), clause.get("value")))
            except ValueError as exc:
                problems.append(f"{where} clause #{m}: {exc}")
        problems += [f"{where}: unknown key {k!r} (expected clause)" for k in entry if k != "clause"]
        filters.append(ScopingFilter(tuple(built)))
    return ScopingFilters(tuple(filters))
