"""The small SOQL subset that provisioning clients send: parse it and run it over in-memory records.

    SELECT f1, f2 FROM User|Profile|UserRole [WHERE cond [AND|OR cond]...] [ORDER BY f [ASC|DESC]] [LIMIT n]
    cond := field (= | != | <>) literal | field [NOT] IN (literal, ...) | field LIKE 'pattern'
          | NOT cond | ( cond ... )

String literals use SOQL escapes (\\' \\\\ \\" \\n \\r \\t \\b \\f, and \\% \\_ in LIKE) as
simple_salesforce.format_soql writes them. Text comparisons are case-insensitive, as in Salesforce;
Id comparisons accept 15- or 18-character ids. AND and OR may not be mixed without parentheses."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*')
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<op>!=|<>|<=|>=|=|<|>)
      | (?P<punct>[(),])
      | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)
_SPACE = re.compile(r"\s*")
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", "%": "%", "_": "_"}


class SoqlError(Exception):
    """A query Salesforce would refuse; `code` is MALFORMED_QUERY, INVALID_FIELD or INVALID_TYPE."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    pos: int

    @property
    def keyword(self) -> str:
        return self.text.upper() if self.kind == "word" else ""


@dataclass(frozen=True)
class Literal:
    """A decoded literal. For strings, `chars` keeps which characters were escaped (LIKE needs it)."""

    value: Any
    chars: tuple[tuple[str, bool], ...] = ()


Predicate = Callable[[Mapping[str, Any]], bool]


@dataclass(frozen=True)
class Query:
    sobject: str
    fields: tuple[str, ...]
    where: Predicate | None
    order_by: tuple[str, bool] | None  # (field, descending)
    limit: int | None

    def run(self, records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        rows = [r for r in records if self.where is None or self.where(r)]
        if self.order_by:
            name, descending = self.order_by
            rows.sort(key=lambda r: (r.get(name) is None, _sort_key(r.get(name))), reverse=descending)
        if self.limit is not None:
            rows = rows[: self.limit]
        return [{name: row.get(name) for name in self.fields} for row in rows]


def parse(text: str, schema: Mapping[str, Mapping[str, str]]) -> Query:
    """`schema` maps each queryable sObject name to {lower-case field name: API field name}."""
    return _Parser(text, schema).query()


def _tokenize(text: str) -> list[_Token]:
    tokens, pos = [], 0
    while (pos := _SPACE.match(text, pos).end()) < len(text):  # type: ignore[union-attr]
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            snippet = text[pos:].strip()[:20]
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{snippet}'")
        kind = match.lastgroup or ""
        tokens.append(_Token(kind, match.group(kind), match.start(kind)))
        pos = match.end()
    return tokens


def _decode_string(raw: str) -> Literal:
    body, chars, i = raw[1:-1], [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            if i + 1 >= len(body) or body[i + 1] not in _ESCAPES:
                raise SoqlError("MALFORMED_QUERY", f"Invalid string literal {raw!r}. Illegal character sequence '\\{body[i + 1:i + 2]}'")
            chars.append((_ESCAPES[body[i + 1]], True))
            i += 2
        else:
            chars.append((ch, False))
            i += 1
    return Literal("".join(c for c, _ in chars), tuple(chars))


def _sort_key(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _key(field: str, value: Any) -> Any:
    """The comparable form of a value: text case-insensitive; ids by their 15-character form."""
    if not isinstance(value, str):
        return value
    return value[:15] if field.endswith("Id") else value.casefold()


def _like_regex(literal: Literal) -> re.Pattern[str]:
    parts = []
    for ch, escaped in literal.chars:
        if not escaped and ch == "%":
            parts.append(".*")
        elif not escaped and ch == "_":
            parts.append(".")
        else:
            parts.append(re.escape(ch))
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


class _Parser:
    def __init__(self, text: str, schema: Mapping[str, Mapping[str, str]]) -> None:
        self.text = text
        self.schema = schema
        self.tokens = _tokenize(text)
        self.i = 0
        self.fields: Mapping[str, str] = {}
        self.sobject = ""

    # -- token helpers
    def _peek(self) -> _Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _next(self, what: str) -> _Token:
        token = self._peek()
        if token is None:
            raise SoqlError("MALFORMED_QUERY", f"unexpected end of query, expected {what}")
        self.i += 1
        return token

    def _expect_keyword(self, keyword: str) -> None:
        token = self._next(keyword)
        if token.keyword != keyword:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{token.text}', expected {keyword}")

    def _at_keyword(self, *keywords: str) -> bool:
        token = self._peek()
        return token is not None and token.keyword in keywords

    def _at(self, text: str) -> bool:
        token = self._peek()
        return token is not None and token.kind != "string" and token.text == text

    # -- grammar
    def query(self) -> Query:
        self._expect_keyword("SELECT")
        names = [self._next("a field").text]
        while self._at(","):
            self.i += 1
            names.append(self._next("a field").text)
        self._expect_keyword("FROM")
        sobject_token = self._next("an sObject")
        matches = [name for name in self.schema if name.lower() == sobject_token.text.lower()]
        if not matches:
            raise SoqlError("INVALID_TYPE", f"sObject type '{sobject_token.text}' is not supported.")
        self.sobject = matches[0]
        self.fields = self.schema[self.sobject]
        fields = tuple(self._field(name) for name in names)
        where = order_by = limit = None
        if self._at_keyword("WHERE"):
            self.i += 1
            where = self._condition_list()
        if self._at_keyword("ORDER"):
            self.i += 1
            self._expect_keyword("BY")
            name = self._field(self._next("a field").text)
            descending = False
            if self._at_keyword("ASC", "DESC"):
                descending = self._next("ASC or DESC").keyword == "DESC"
            order_by = (name, descending)
        if self._at_keyword("LIMIT"):
            self.i += 1
            token = self._next("a number")
            if token.kind != "number" or not token.text.isdigit():
                raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{token.text}', expected a number after LIMIT")
            limit = int(token.text)
        trailing = self._peek()
        if trailing is not None:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{trailing.text}'")
        return Query(self.sobject, fields, where, order_by, limit)

    def _field(self, name: str) -> str:
        try:
            return self.fields[name.lower()]
        except KeyError:
            raise SoqlError("INVALID_FIELD", f"No such column '{name}' on entity '{self.sobject}'.") from None

    def _condition_list(self) -> Predicate:
        first = self._condition()
        if not self._at_keyword("AND", "OR"):
            return first
        joiner = self._peek().keyword  # type: ignore[union-attr]
        parts = [first]
        while self._at_keyword("AND", "OR"):
            token = self._next(joiner)
            if token.keyword != joiner:
                raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{token.text}' (use parentheses to mix AND and OR)")
            parts.append(self._condition())
        combine = all if joiner == "AND" else any
        return lambda row: combine(p(row) for p in parts)

    def _condition(self) -> Predicate:
        if self._at_keyword("NOT"):
            self.i += 1
            inner = self._condition()
            return lambda row: not inner(row)
        if self._at("("):
            self.i += 1
            inner = self._condition_list()
            if not self._at(")"):
                raise SoqlError("MALFORMED_QUERY", "expected ')'")
            self.i += 1
            return inner
        field = self._field(self._next("a field").text)
        token = self._next("an operator")
        if token.kind == "op" and token.text in ("=", "!=", "<>"):
            value = _key(field, self._literal().value)
            if token.text == "=":
                return lambda row: _key(field, row.get(field)) == value
            return lambda row: _key(field, row.get(field)) != value
        negate = token.keyword == "NOT"
        if negate:
            token = self._next("IN")
        if token.keyword == "IN":
            values = {_key(field, v) for v in self._literal_list()}
            if negate:
                return lambda row: _key(field, row.get(field)) not in values
            return lambda row: _key(field, row.get(field)) in values
        if token.keyword == "LIKE" and not negate:
            literal = self._literal()
            if not isinstance(literal.value, str):
                raise SoqlError("MALFORMED_QUERY", "LIKE needs a string literal")
            pattern = _like_regex(literal)
            return lambda row: isinstance(row.get(field), str) and bool(pattern.fullmatch(row[field]))
        raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{token.text}'")

    def _literal(self) -> Literal:
        token = self._next("a value")
        if token.kind == "string":
            return _decode_string(token.text)
        if token.kind == "number":
            return Literal(float(token.text) if "." in token.text else int(token.text))
        if token.keyword in ("TRUE", "FALSE"):
            return Literal(token.keyword == "TRUE")
        if token.keyword == "NULL":
            return Literal(None)
        raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{token.text}', expected a value")

    def _literal_list(self) -> list[Any]:
        if not self._at("("):
            raise SoqlError("MALFORMED_QUERY", "expected '(' after IN")
        self.i += 1
        values = [self._literal().value]
        while self._at(","):
            self.i += 1
            values.append(self._literal().value)
        if not self._at(")"):
            raise SoqlError("MALFORMED_QUERY", "expected ')' to close the IN list")
        self.i += 1
        return values
