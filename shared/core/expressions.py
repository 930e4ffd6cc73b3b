"""Attribute-mapping expressions in the syntax of Entra's provisioning connector.

    expr = parse_expression('Append(Mid([givenName], 1, 3), ToLower([surname]))')
    expr.evaluate(MappingInput(user, role_names))

VBA-like and case-sensitive: function calls `Name(arg, ...)`, attributes `[name]` (or a dotted path into
a complex property, `[employeeOrgData.division]`), strings `"..."` (escape `"` as `\\"` as the Microsoft
reference does, or as `""` as VBA does), integers (also VBA hex, `&HF7`), `True`/`False`, InStr's
`vbBinaryCompare`/`vbTextCompare`, empty arguments (`Replace([x], "-", , , "_", , )`) and the
comparisons IIF's condition uses (`=`, `<>`, `<`, `<=`, `>`, `>=`). A hand-written recursive-descent
parser: nothing is ever eval'd.

Every function of the connector's reference is here except Guid and RandomString (a new value on every
evaluation would update the user on every cycle; the connector uses them for passwords, which this app
does not set) and AppRoleAssignmentsComplex (several roles for SCIM apps; a Salesforce user has one
profile): using one is a parse error that says why. Dates (CDate, DateAdd, Now, ...) are in
expression_dates; a date that ends an expression is sent as the connector prints it, M/d/yyyy h:mm:ss tt
in UTC (FormatDateTime gives any other form); Now() belongs in comparisons (DateDiff), as the reference
uses it: sent as a value it would change on every cycle. Redact returns its value: this app logs no values.
Unknown functions, wrong argument counts and invalid regular expression literals are errors at parse
time with the line and column; what can only go wrong with a user's data raises PermanentError.
"""
from __future__ import annotations

import base64
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Mapping

from . import expression_dates as dates
from .errors import PermanentError
from .models import PROPERTY_PATH

# The attribute SingleAppRoleAssignment reads: the user's resolved role names, not a Graph property.
APP_ROLE_ASSIGNMENTS = "appRoleAssignments"

IsUnique = Callable[[str, Any], bool]


class ExpressionError(ValueError):
    """An expression that cannot be parsed; line and column are 1-based, within the expression."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.message = message
        self.line = line
        self.column = column


class _Missing:
    """An empty argument, as in `Replace([x], "-", , , "_", , )`."""

    def __repr__(self) -> str:
        return "<missing>"


MISSING = _Missing()


class _Dropped:
    """IgnoreFlowIfNullOrEmpty's empty result: the field is left out of the flow (no default either)."""

    def __repr__(self) -> str:
        return "<dropped>"


DROPPED = _Dropped()
# vbBinaryCompare / vbTextCompare, InStr's compareType, as the names VBA gives them.
COMPARE_TYPES = ("vbBinaryCompare", "vbTextCompare")


# ---- syntax tree ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Pos:
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Literal:
    value: Any
    pos: _Pos


@dataclass(frozen=True, slots=True)
class Attribute:
    name: str
    pos: _Pos


@dataclass(frozen=True, slots=True)
class Empty:
    pos: _Pos


@dataclass(frozen=True, slots=True)
class Compare:
    op: str
    left: "Node"
    right: "Node"
    pos: _Pos


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple["Node", ...]
    pos: _Pos


Node = Literal | Attribute | Empty | Compare | Call


# ---- tokens -----------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""(?P<ws>\s+)
      | (?P<attr>\[[^\[\]\r\n]*\])
      | (?P<string>"(?:[^"\\]|\\.|"")*")
      | (?P<number>-?\d+|&H[0-9A-Fa-f]+)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op><>|<=|>=|=|<|>)
      | (?P<punct>[(),])""",
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # attr, string, number, name, op, punct, end
    text: str
    pos: _Pos


def _tokens(text: str) -> Iterator[_Token]:
    i, line, line_start = 0, 1, 0
    while i < len(text):
        m = _TOKEN.match(text, i)
        pos = _Pos(line, i - line_start + 1)
        if m is None:
            if text[i] == '"':
                raise ExpressionError("string is not closed", pos.line, pos.column)
            if text[i] == "[":
                raise ExpressionError("attribute is not closed with ]", pos.line, pos.column)
            raise ExpressionError(f"unexpected character {text[i]!r}", pos.line, pos.column)
        kind = m.lastgroup or ""
        if kind != "ws":
            yield _Token(kind, m.group(), pos)
        for nl in re.finditer("\n", m.group()):
            line, line_start = line + 1, i + nl.end()
        i = m.end()
    yield _Token("end", "", _Pos(line, i - line_start + 1))


def _unquote(literal: str) -> str:
    body = literal[1:-1]
    return re.sub(r'\\(.)|""', lambda m: m.group(1) or '"', body, flags=re.DOTALL)


# ---- parser -----------------------------------------------------------------------------------

class _Parser:
    def __init__(self, text: str) -> None:
        self._tokens = list(_tokens(text))
        self._i = 0

    @property
    def _peek(self) -> _Token:
        return self._tokens[self._i]

    def _next(self) -> _Token:
        token = self._tokens[self._i]
        self._i += 1
        return token

    def _fail(self, message: str, token: _Token | None = None) -> ExpressionError:
        token = token or self._peek
        return ExpressionError(message, token.pos.line, token.pos.column)

    def parse(self) -> Node:
        if self._peek.kind == "end":
            raise self._fail("expression is empty")
        node = self._argument()
        if isinstance(node, Empty):
            raise self._fail(f"unexpected {self._peek.text!r}")
        if self._peek.kind != "end":
            raise self._fail(f"unexpected {self._peek.text!r} after the end of the expression")
        return node

    def _argument(self) -> Node:
        """An argument: empty, or a value optionally compared with another."""
        if self._peek.text in (",", ")") and self._peek.kind == "punct":
            return Empty(self._peek.pos)
        left = self._value()
        if self._peek.kind == "op":
            op = self._next()
            right = self._value()
            return Compare(op.text, left, right, op.pos)
        return left

    def _value(self) -> Node:
        token = self._next()
        if token.kind == "attr":
            name = token.text[1:-1].strip()
            if not PROPERTY_PATH.fullmatch(name):
                raise self._fail(f"invalid attribute name {name!r}", token)
            return Attribute(name, token.pos)
        if token.kind == "string":
            return Literal(_unquote(token.text), token.pos)
        if token.kind == "number":
            hexadecimal = token.text.startswith("&H")
            return Literal(int(token.text[2:], 16) if hexadecimal else int(token.text), token.pos)
        if token.kind == "name":
            if self._peek.text == "(":
                return self._call(token)
            if token.text in ("True", "False"):
                return Literal(token.text == "True", token.pos)
            if token.text in COMPARE_TYPES:
                return Literal(token.text, token.pos)
            raise self._fail(f"unknown name {token.text!r}: call functions with (), put attributes in [brackets]",
                             token)
        if token.kind == "end":
            raise self._fail("expression ends too early", token)
        raise self._fail(f"unexpected {token.text!r}", token)

    def _call(self, name: _Token) -> Call:
        self._next()  # (
        args: list[Node] = []
        if self._peek.text == ")":
            self._next()
        else:
            while True:
                args.append(self._argument())
                token = self._next()
                if token.text == ")":
                    break
                if token.text != ",":
                    raise self._fail(f"expected ',' or ')' in the arguments of {name.text}, found "
                                     f"{token.text or 'the end'!r}", token)
        call = Call(name.text, tuple(args), name.pos)
        _check_call(call)
        return call


# ---- values -----------------------------------------------------------------------------------

def _empty(value: Any) -> bool:
    return value is None or value is MISSING or value == "" or value == [] or value == ()


def _text(value: Any, function: str) -> str | None:
    """A value as a string, the way the connector shows it (booleans as True/False)."""
    if _empty(value):
        return None
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (str, int, float)):
        return str(value)
    if isinstance(value, datetime):
        return dates.connector_text(value)
    raise PermanentError("ExpressionValueInvalid", f"{function} expects a single value, got a "
                         f"{type(value).__name__}", system="mapping")


def _int(value: Any, function: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise PermanentError("ExpressionValueInvalid", f"{function} expects a whole number",
                             system="mapping") from None


def _truthy(value: Any) -> bool:
    return value is True or isinstance(value, str) and value.lower() == "true"


def _compare(op: str, left: Any, right: Any) -> bool:
    """The connector's comparison: false when either side is null; numbers compare as numbers."""
    if _empty(left) and _empty(right):
        return op in ("=", "<=", ">=")
    if _empty(left) or _empty(right):
        return op == "<>"
    a, b = _text(left, op), _text(right, op)
    try:
        a, b = int(a), int(b)  # type: ignore[arg-type,assignment]
    except ValueError:
        pass
    return {"=": a == b, "<>": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]  # type: ignore[operator]


# ---- functions --------------------------------------------------------------------------------

# The characters the Microsoft reference maps to more than the base letter, or that do not decompose.
_DIACRITIC_SPECIAL = str.maketrans({
    "æ": "ae", "Æ": "AE", "ǣ": "ae", "Ǣ": "AE", "ø": "oe", "Ø": "OE", "œ": "oe", "Œ": "OE", "ß": "ss",
    "ł": "l", "Ł": "L", "ı": "i", "đ": "d", "Đ": "D",
})


def _normalize_diacritics(value: str) -> str:
    decomposed = unicodedata.normalize("NFD", value.translate(_DIACRITIC_SPECIAL))
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if not unicodedata.combining(c)))


def _dotnet_pattern(pattern: str) -> str:
    """.NET named groups `(?<name>…)` in Python's spelling; lookbehinds `(?<=`, `(?<!` stay."""
    return re.sub(r"\(\?<(?![=!])", "(?P<", pattern)


def _dotnet_replacement(replacement: str) -> str:
    """.NET substitutions ($1, ${name}, $$) in Python's spelling; backslashes stay literal."""
    replacement = replacement.replace("\\", "\\\\")
    return re.sub(r"\$(?:\{(\w+)\}|(\d+)|(\$))",
                  lambda m: "$" if m.group(3) else f"\\g<{m.group(1) or m.group(2)}>", replacement)


def _regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(_dotnet_pattern(pattern))
    except re.error as exc:
        raise PermanentError("ExpressionValueInvalid", f"invalid regular expression: {exc}", system="mapping") from None


def _replace(source: Any, old: Any, pattern: Any, group: Any, replacement: Any, replacement_attr: Any,
             template: Any) -> Any:
    given = lambda v: v is not MISSING  # noqa: E731  (an empty string counts as given)
    text = _text(source, "Replace")
    if given(pattern) and given(group) and given(replacement_attr):
        if text is not None:
            return text
        other = _text(replacement_attr, "Replace")
        found = _regex(pattern).search(other) if other is not None else None
        return found.group(group) if found else None
    if text is None:
        return None
    if given(old) and given(template):
        return str(template).replace(str(old), text)
    if given(old) and given(replacement):
        return text.replace(str(old), str(replacement)) if old != "" else text
    if given(pattern) and given(group) and given(replacement):
        regex, out, last = _regex(pattern), [], 0
        for m in regex.finditer(text):
            start, end = m.span(group)
            if start < 0:
                continue
            out += [text[last:start], str(replacement)]
            last = end
        return "".join(out) + text[last:]
    return _regex(pattern).sub(_dotnet_replacement(str(replacement)), text)


def _append(source: Any, suffix: Any) -> str | None:
    text = _text(source, "Append")
    return None if text is None else text + (_text(suffix, "Append") or "")


def _join(separator: Any, *sources: Any) -> str | None:
    parts: list[str] = []
    for source in sources:
        for value in source if isinstance(source, (list, tuple)) else (source,):
            text = _text(value, "Join")
            if text is not None:
                parts.append(text)
    return (_text(separator, "Join") or "").join(parts) if parts else None


def _left(source: Any, count: Any) -> str:
    text, n = _text(source, "Left") or "", _int(count, "Left")
    return text if n < 0 else text[:n]


def _mid(source: Any, start: Any, length: Any) -> str | None:
    text = _text(source, "Mid")
    if text is None:
        return None
    begin, n = max(_int(start, "Mid"), 1) - 1, _int(length, "Mid")
    return text[begin:begin + max(n, 0)]


def _switch(source: Any, default: Any, *pairs: Any) -> Any:
    text = _text(source, "Switch") or ""
    for key, value in zip(pairs[::2], pairs[1::2]):
        if (_text(key, "Switch") or "") == text:
            return None if value is MISSING else value
    return None if default is MISSING else default


def _word(source: Any, number: Any, delimiters: Any) -> str:
    text, n = _text(source, "Word"), _int(number, "Word")
    if text is None or n < 1:
        return ""
    separators = _text(delimiters, "Word") or ""
    words = [w for w in re.split("|".join(map(re.escape, separators)), text) if w] if separators else [text]
    return words[n - 1] if n <= len(words) else ""


def _split(source: Any, delimiter: Any) -> list[str] | None:
    text = _text(source, "Split")
    return None if text is None else text.split(_text(delimiter, "Split") or ",")


def _string_function(function: Callable[[str], Any], name: str) -> Callable[..., Any]:
    def apply(source: Any, *_options: Any) -> Any:
        text = _text(source, name)
        return None if text is None else function(text)
    return apply


def _values(source: Any) -> list[Any]:
    """A multi-valued attribute's values (a single value is one; null is none)."""
    if source is None or source is MISSING:
        return []
    return list(source) if isinstance(source, (list, tuple)) else [source]


def _cbool(value: Any) -> bool:
    """True for a non-zero number, True, or "True"; False for zero, False, "False" and null."""
    if _empty(value):
        return False
    if isinstance(value, (bool, int, float)):
        return bool(value)
    text = _text(value, "CBool") or ""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return float(text) != 0
    except ValueError:
        raise PermanentError("ExpressionValueInvalid", "CBool expects a number or True/False", system="mapping") from None


def _in_str(haystack: Any, needle: Any, start: Any = MISSING, compare: Any = MISSING) -> int | None:
    """1-based position of the first `needle` in `haystack` from `start`, 0 when absent."""
    text = _text(haystack, "InStr")
    if text is None:
        return None
    wanted = _text(needle, "InStr") or ""
    begin = 1 if start is MISSING or start is None else max(_int(start, "InStr"), 1)
    if compare == "vbTextCompare":
        text, wanted = text.casefold(), wanted.casefold()
    return text.find(wanted, begin - 1) + 1


def _item(source: Any, index: Any) -> Any:
    values, n = _values(source), _int(index, "Item")
    return values[n - 1] if 1 <= n <= len(values) else None


def _remove_duplicates(source: Any) -> list[Any] | None:
    values = _values(source)
    return list(dict.fromkeys(values)) if values else None


# PCase's default word separators: the Unicode categories the Microsoft reference lists for .NET's
# ToTitleCase (spaces, controls, connector/dash/open/close/quote/other punctuation, symbols).
_SEPARATOR_CATEGORIES = ("Z", "Cc", "Cf", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So")


def _pcase(source: Any, separators: Any = MISSING) -> str | None:
    text = _text(source, "PCase")
    if text is None:
        return None
    given = None if separators is MISSING or _empty(separators) else _text(separators, "PCase")
    out, word_start = [], True
    for char in text:
        separator = char in given if given is not None else unicodedata.category(char).startswith(_SEPARATOR_CATEGORIES)
        out.append(char if separator else char.upper() if word_start else char.lower())
        word_start = separator
    return "".join(out)


def _bit_and(a: Any, b: Any) -> int:
    return _int(a, "BitAnd") & _int(b, "BitAnd")


def _null_passing(apply: Callable[..., Any]) -> Callable[..., Any]:
    """A date function: a null (or empty) argument gives null rather than an error."""
    def run(*args: Any) -> Any:
        if any(a is None or a == "" for a in args):
            return None
        return apply(*args)
    return run


@dataclass(frozen=True, slots=True)
class _Function:
    min_args: int
    max_args: int | None  # None: any number
    apply: Callable[..., Any]


FUNCTIONS: dict[str, _Function] = {
    "Append": _Function(2, 2, _append),
    "BitAnd": _Function(2, 2, _bit_and),
    "CBool": _Function(1, 1, _cbool),
    "CDate": _Function(1, 1, _null_passing(lambda v: dates.to_date(v, "CDate").astimezone(timezone.utc))),
    "ConvertToBase64": _Function(1, 1, _string_function(lambda t: base64.b64encode(t.encode("utf-16-le")).decode(),
                                                         "ConvertToBase64")),
    "ConvertToUTF8Hex": _Function(1, 1, _string_function(lambda t: t.encode().hex().upper(), "ConvertToUTF8Hex")),
    "Count": _Function(1, 1, lambda v: len(_values(v))),
    "CStr": _Function(1, 1, lambda v: _text(v, "CStr")),
    "DateAdd": _Function(3, 3, _null_passing(lambda i, n, d: dates.date_add(i, _int(n, "DateAdd"), d))),
    "DateDiff": _Function(3, 3, _null_passing(dates.date_diff)),
    "DateFromNum": _Function(1, 1, _null_passing(dates.date_from_num)),
    "FormatDateTime": _Function(4, 4, lambda source, _styles, fmt_in, fmt_out: dates.format_date_time(source, fmt_in, fmt_out)),
    "IgnoreFlowIfNullOrEmpty": _Function(1, 1, lambda v: v),  # evaluated by Expression.evaluate
    "Coalesce": _Function(1, None, lambda *values: next((v for v in values if not _empty(v)), None)),
    "IIF": _Function(3, 3, lambda condition, yes, no: yes if _truthy(condition) else no),
    "InStr": _Function(2, 4, _in_str),
    "IsNull": _Function(1, 1, lambda v: v is None or v is MISSING),
    "IsNullOrEmpty": _Function(1, 1, _empty),
    "IsPresent": _Function(1, 1, lambda v: not _empty(v)),
    "IsString": _Function(1, 1, lambda v: isinstance(v, str)),
    "Item": _Function(2, 2, _item),
    "Join": _Function(2, None, _join),
    "Left": _Function(2, 2, _left),
    "Mid": _Function(3, 3, _mid),
    "NormalizeDiacritics": _Function(1, 1, _string_function(_normalize_diacritics, "NormalizeDiacritics")),
    "Not": _Function(1, 1, lambda v: not _truthy(v)),
    "Now": _Function(0, 0, lambda: None),  # evaluated by _evaluate: the time of the evaluation
    "NumFromDate": _Function(1, 1, _null_passing(dates.num_from_date)),
    "PCase": _Function(1, 2, _pcase),
    "Redact": _Function(1, 1, lambda v: v),  # hides a value from the connector's logs; this app logs none
    "RemoveDuplicates": _Function(1, 1, _remove_duplicates),
    "Replace": _Function(7, 7, _replace),
    "SelectUniqueValue": _Function(2, None, lambda *values: values),  # evaluated by Expression.evaluate
    "SingleAppRoleAssignment": _Function(1, 1, lambda roles: roles[0] if roles else None),
    "Split": _Function(2, 2, _split),
    "StripSpaces": _Function(1, 1, _string_function(lambda t: t.replace(" ", ""), "StripSpaces")),
    "Switch": _Function(4, None, _switch),
    "ToLower": _Function(1, 2, _string_function(str.lower, "ToLower")),
    "ToUpper": _Function(1, 2, _string_function(str.upper, "ToUpper")),
    "Word": _Function(3, 3, _word),
}


# The connector's functions left out, and why (an error at parse time says so).
UNSUPPORTED = {
    "Guid": "it gives a new value on every evaluation, so the user would be updated on every cycle",
    "RandomString": "it gives a new value on every evaluation (the connector uses it for passwords, which "
                    "this app does not set: users sign in with single sign-on)",
    "AppRoleAssignmentsComplex": "it sends several roles to SCIM apps; a Salesforce user has one profile "
                                 "(set PROFILE_PRIORITY for users with several roles)",
}
_TOP_LEVEL_ONLY = ("SelectUniqueValue", "IgnoreFlowIfNullOrEmpty")


def _check_call(call: Call) -> None:
    """What can be known without data: the function exists and gets arguments it can use."""
    def fail(message: str, pos: _Pos = call.pos) -> ExpressionError:
        return ExpressionError(message, pos.line, pos.column)

    if call.name in UNSUPPORTED:
        raise fail(f"{call.name} is not supported: {UNSUPPORTED[call.name]}")
    spec = FUNCTIONS.get(call.name)
    if spec is None:
        near = [n for n in FUNCTIONS if n.lower() == call.name.lower()]
        hint = f" (names are case-sensitive: {near[0]})" if near else ""
        raise fail(f"unknown function {call.name}{hint}")
    n = len(call.args)
    if n < spec.min_args or spec.max_args is not None and n > spec.max_args:
        wanted = (f"{spec.min_args}" if spec.min_args == spec.max_args
                  else f"at least {spec.min_args}" if spec.max_args is None else f"{spec.min_args} to {spec.max_args}")
        raise fail(f"{call.name} takes {wanted} arguments, got {n}")
    if call.name != "Replace" and call.args and isinstance(call.args[0], Empty):
        raise fail(f"{call.name} needs its first argument")
    if call.name == "Switch" and n % 2:
        raise fail("Switch takes a source, a default and key/value pairs: an even number of arguments")
    if call.name == "SingleAppRoleAssignment" and call.args != (Attribute(APP_ROLE_ASSIGNMENTS, call.args[0].pos),):
        raise fail(f"SingleAppRoleAssignment takes exactly [{APP_ROLE_ASSIGNMENTS}]")
    if call.name == "Replace":
        _check_replace(call, fail)
    if call.name in ("DateAdd", "DateDiff") and isinstance(call.args[0], Literal) and call.args[0].value not in dates.INTERVALS:
        raise fail(f"{call.name} interval must be one of {', '.join(dates.INTERVALS)}, got {call.args[0].value!r}",
                   call.args[0].pos)
    if call.name == "FormatDateTime":
        for fmt in call.args[2:]:
            problem = dates.check_format(str(fmt.value)) if isinstance(fmt, Literal) else None
            if isinstance(fmt, Empty) or problem:
                raise fail(f"FormatDateTime needs inputFormat and outputFormat"
                           + (f": {problem}" if problem else ""), fmt.pos)
    if call.name == "InStr" and n == 4 and not (isinstance(call.args[3], Empty) or isinstance(call.args[3], Literal)
                                                 and call.args[3].value in COMPARE_TYPES):
        raise fail(f"InStr compareType must be {' or '.join(COMPARE_TYPES)}", call.args[3].pos)


def _check_replace(call: Call, fail: Callable[..., ExpressionError]) -> None:
    source, old, pattern, group, replacement, replacement_attr, template = (not isinstance(a, Empty) for a in call.args)
    if not source:
        raise fail("Replace needs its source")
    if not (old and (replacement or template) or pattern and (replacement or group and replacement_attr)):
        raise fail("Replace needs oldValue with replacementValue or template, or regexPattern with "
                   "replacementValue (and optionally regexGroupName), or regexPattern, regexGroupName and "
                   "replacementAttributeName")
    regex = call.args[2]
    if isinstance(regex, Literal):
        try:
            compiled = re.compile(_dotnet_pattern(str(regex.value)))
        except re.error as exc:
            raise fail(f"invalid regular expression: {exc}", regex.pos) from None
        name = call.args[3]
        if isinstance(name, Literal) and str(name.value) not in compiled.groupindex and not (
                str(name.value).isdigit() and int(name.value) <= compiled.groups):
            raise fail(f"regexGroupName {name.value!r} is not a group of the pattern", name.pos)


# ---- evaluation -------------------------------------------------------------------------------

class Expression:
    """A parsed expression. `attributes` are the Graph properties it reads (for $select)."""

    def __init__(self, text: str, root: Node) -> None:
        self.text = text
        self._root = root
        self.attributes = tuple(sorted({n.name for n in _walk(root) if isinstance(n, Attribute)}
                                       - {APP_ROLE_ASSIGNMENTS}))
        self.functions = frozenset(n.name for n in _walk(root) if isinstance(n, Call))

    @property
    def selects_unique_value(self) -> bool:
        return isinstance(self._root, Call) and self._root.name == "SelectUniqueValue"

    def candidates(self, source: Any) -> tuple[Any, ...]:
        """SelectUniqueValue's non-empty candidates for one user, in order (empty for other expressions)."""
        if not self.selects_unique_value:
            return ()
        return tuple(v for v in (_evaluate(a, source) for a in self._root.args) if not _empty(v))  # type: ignore[union-attr]

    def evaluate(self, source: Any, *, target: str = "", is_unique: IsUnique | None = None) -> Any:
        """Evaluate for one user. `source` is a MappingInput (user attributes and resolved role names).

        SelectUniqueValue returns its first non-empty candidate that `is_unique(target, value)`
        accepts; without a callback, the first non-empty one. None of them unique is a PermanentError."""
        try:
            if isinstance(self._root, Call) and self._root.name == "IgnoreFlowIfNullOrEmpty":
                value = _evaluate(self._root.args[0], source)
                return DROPPED if _empty(value) else _result(value)
            if not self.selects_unique_value:
                return _result(_evaluate(self._root, source))
            candidates = tuple(_result(v) for v in self.candidates(source))
        except PermanentError as exc:
            if not target or exc.code != "ExpressionValueInvalid":
                raise
            raise PermanentError(exc.code, f"{target}: {exc.message}", system=exc.system, fields=(target,)) from None
        for value in candidates:
            if is_unique is None or is_unique(target, value):
                return value
        if not candidates:
            return None
        raise PermanentError("NoUniqueValue", f"every SelectUniqueValue candidate for {target or 'the field'} "
                             "is already taken", system="mapping", fields=(target,) if target else ())

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"


def _result(value: Any) -> Any:
    """A date leaves an expression as the connector prints it; other values as they are."""
    return dates.connector_text(value) if isinstance(value, datetime) else value


def _walk(node: Node) -> Iterator[Node]:
    yield node
    if isinstance(node, Call):
        for arg in node.args:
            yield from _walk(arg)
    elif isinstance(node, Compare):
        yield from _walk(node.left)
        yield from _walk(node.right)


def _evaluate(node: Node, source: Any) -> Any:
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Attribute):
        if node.name == APP_ROLE_ASSIGNMENTS:
            return tuple(source.role_names)
        value = source.user.get(node.name)
        if isinstance(value, Mapping):
            raise PermanentError("ExpressionValueInvalid", f"[{node.name}] is an object ({type(value).__name__}), not "
                                 f"a value; name one of its properties, e.g. [{node.name}.<property>]", system="mapping")
        return value
    if isinstance(node, Empty):
        return MISSING
    if isinstance(node, Compare):
        return _compare(node.op, _evaluate(node.left, source), _evaluate(node.right, source))
    if node.name == "Now":
        return getattr(source, "now", None) or datetime.now(timezone.utc)
    if node.name == "IIF":  # only the branch taken is evaluated
        condition, yes, no = node.args
        return _evaluate(yes if _truthy(_evaluate(condition, source)) else no, source)
    return FUNCTIONS[node.name].apply(*(_evaluate(a, source) for a in node.args))


def parse_expression(text: str) -> Expression:
    """Parse an expression; raises ExpressionError (with line and column) when it is invalid."""
    root = _Parser(text).parse()
    nested = [n for n in _walk(root) if isinstance(n, Call) and n.name in _TOP_LEVEL_ONLY and n is not root]
    if nested:
        raise ExpressionError(f"{nested[0].name} must be the whole expression, not nested",
                              nested[0].pos.line, nested[0].pos.column)
    return Expression(text, root)
