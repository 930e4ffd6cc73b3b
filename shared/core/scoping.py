"""Attribute scoping filters, as Entra's provisioning connector defines them.

A filter is a list of clauses that must all hold (AND); a user is in scope when any filter holds (OR);
with no filters every assigned user is in scope. Every operator except IS NULL / IS NOT NULL is false
for a null or empty attribute, as the connector documents. Comparisons are case-sensitive.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from .models import PROPERTY_PATH, EntraUser


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def _integer(value: Any) -> int | None:
    try:
        return int(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def _greater(strict: bool) -> Callable[[Any, Any], bool]:
    def compare(attribute: Any, value: Any) -> bool:
        number = _integer(attribute)
        return number is not None and (number > value if strict else number >= value)
    return compare


def _is_bool(expected: bool) -> Callable[[Any, Any], bool]:
    return lambda attribute, _: attribute is expected or _text(attribute).lower() == str(expected).lower()


# operator → (needs a value, test(attribute value, clause value)); the value is pre-compiled for regexes.
_OPERATORS: dict[str, tuple[bool, Callable[[Any, Any], bool]]] = {
    "EQUALS": (True, lambda a, v: _text(a) == v),
    "NOT EQUALS": (True, lambda a, v: _text(a) != v),
    "IS TRUE": (False, _is_bool(True)),
    "IS FALSE": (False, _is_bool(False)),
    "Includes": (True, lambda a, v: v in _text(a)),
    "ENDS_WITH": (True, lambda a, v: _text(a).endswith(v)),
    # .NET Regex.IsMatch semantics: the pattern may match anywhere unless anchored.
    "REGEX MATCH": (True, lambda a, v: v.search(_text(a)) is not None),
    "NOT REGEX MATCH": (True, lambda a, v: v.search(_text(a)) is None),
    "Greater_Than": (True, _greater(strict=True)),
    "Greater_Than_OR_EQUALS": (True, _greater(strict=False)),
    # "true if the evaluated attribute exists in the input string value"
    "&": (True, lambda a, v: _text(a) in v),
    "!&": (True, lambda a, v: _text(a) not in v),
}
_NULL_OPERATORS = ("IS NULL", "IS NOT NULL")
OPERATORS = (*_OPERATORS, *_NULL_OPERATORS)


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == ()


@dataclass(frozen=True, slots=True)
class ScopingClause:
    attribute: str
    operator: str
    value: Any = None  # a str, an int (Greater_Than…) or a compiled pattern (REGEX MATCH…)

    def holds(self, user: EntraUser) -> bool:
        attribute = user.get(self.attribute)
        if self.operator in _NULL_OPERATORS:
            return _empty(attribute) == (self.operator == "IS NULL")
        if _empty(attribute) or isinstance(attribute, (list, tuple, dict)):
            return False  # null is false; multi-valued attributes are not supported by the connector either
        return _OPERATORS[self.operator][1](attribute, self.value)


def scoping_clause(attribute: Any, operator: Any, value: Any = None) -> ScopingClause:
    """A validated clause; ValueError says what is wrong with it."""
    if not isinstance(attribute, str) or not PROPERTY_PATH.fullmatch(attribute):
        raise ValueError(f"attribute must be a Graph user property name or a dotted path into one "
                         f"(employeeOrgData.division), got {attribute!r}")
    if operator in _NULL_OPERATORS or operator in ("IS TRUE", "IS FALSE"):
        if value is not None:
            raise ValueError(f"{operator} takes no value")
        return ScopingClause(attribute, operator)
    if operator not in _OPERATORS:
        raise ValueError(f"unknown operator {operator!r}; one of: {', '.join(OPERATORS)}")
    if value is None:
        raise ValueError(f"{operator} needs a value")
    if operator.startswith("Greater_Than"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{operator} needs an integer value, got {value!r}")
        return ScopingClause(attribute, operator, value)
    if not isinstance(value, str):
        raise ValueError(f"{operator} needs a string value, got {value!r}")
    if operator.endswith("REGEX MATCH"):
        try:
            return ScopingClause(attribute, operator, re.compile(value))
        except re.error as exc:
            raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return ScopingClause(attribute, operator, value)


@dataclass(frozen=True, slots=True)
class ScopingFilter:
    clauses: tuple[ScopingClause, ...]

    def holds(self, user: EntraUser) -> bool:
        return all(c.holds(user) for c in self.clauses)


@dataclass(frozen=True, slots=True)
class ScopingFilters:
    filters: tuple[ScopingFilter, ...] = ()

    @property
    def attributes(self) -> tuple[str, ...]:
        """The Graph property paths the filters read (their top-level properties must be in $select)."""
        return tuple(sorted({c.attribute for f in self.filters for c in f.clauses}))

    def in_scope(self, user: EntraUser) -> bool:
        return not self.filters or any(f.holds(user) for f in self.filters)
