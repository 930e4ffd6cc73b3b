"""The date functions of the connector's expressions: CDate, DateAdd, DateDiff, DateFromNum, NumFromDate,
FormatDateTime, and how a date prints (the connector's "M/d/yyyy h:mm:ss tt", in UTC).

Dates are timezone-aware datetimes while an expression is evaluated. FormatDateTime takes .NET custom
date and time format strings (yyyy, MM, d, HH, hh, mm, ss, f…, tt, zzz, K, 'literal', \\c), translated
here into a regular expression to read a value and into text to write one. DateDiff counts as
Visual Basic's DateDiff does (years and months by calendar, weeks by Sunday-started weeks, the rest by
elapsed time, truncated toward zero), which is what the Microsoft reference's examples show.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from dateutil import parser as date_parser
from dateutil.relativedelta import relativedelta

from .errors import PermanentError

# DateAdd and DateDiff intervals, as the Microsoft reference lists them.
INTERVALS = ("yyyy", "m", "d", "ww", "h", "n", "s")
_AD_EPOCH = datetime(1601, 1, 1, tzinfo=timezone.utc)  # Active Directory dates: 100 ns ticks since then
_DATE_WITH_OFFSET = re.compile(r"(\d{4})-(\d{2})-(\d{2})(Z|[+-]\d{2}:\d{2})")  # XML Schema date: 2020-03-16-07:00
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _invalid(function: str, message: str) -> PermanentError:
    return PermanentError("ExpressionValueInvalid", f"{function}: {message}", system="mapping")


def connector_text(value: datetime) -> str:
    """A date as the connector prints it: UTC, M/d/yyyy h:mm:ss tt."""
    d = value.astimezone(timezone.utc)
    return f"{d.month}/{d.day}/{d.year} {d.hour % 12 or 12}:{d.minute:02}:{d.second:02} {'PM' if d.hour >= 12 else 'AM'}"


def to_date(value: Any, function: str) -> datetime:
    """CDate: a date from a date, or from text in ISO 8601, XML Schema (2020-03-16-07:00) or US form
    (8/25/2021 5:41:18 PM); without an offset it is UTC."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if not isinstance(value, str) or not value.strip():
        raise _invalid(function, f"expects a date, got {type(value).__name__}")
    text = value.strip()
    match = _DATE_WITH_OFFSET.fullmatch(text)
    try:
        if match:
            year, month, day, offset = match.groups()
            return datetime(int(year), int(month), int(day), tzinfo=_offset(offset))
        parsed = date_parser.parse(text, dayfirst=False)
    except (ValueError, OverflowError):
        raise _invalid(function, "cannot read the value as a date") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _offset(text: str) -> timezone:
    if text in ("Z", "z"):
        return timezone.utc
    sign = -1 if text[0] == "-" else 1
    hours, _, minutes = text[1:].partition(":")
    return timezone(sign * timedelta(hours=int(hours), minutes=int(minutes or 0)))


def date_add(interval: str, number: int, value: Any) -> datetime:
    date = to_date(value, "DateAdd")
    step = {"yyyy": relativedelta(years=number), "m": relativedelta(months=number), "d": timedelta(days=number),
            "ww": timedelta(weeks=number), "h": timedelta(hours=number), "n": timedelta(minutes=number),
            "s": timedelta(seconds=number)}[interval]
    return date + step


def date_diff(interval: str, first: Any, second: Any) -> int:
    """How many intervals from `first` to `second`: positive when second is later."""
    a, b = to_date(first, "DateDiff").astimezone(timezone.utc), to_date(second, "DateDiff").astimezone(timezone.utc)
    if interval == "yyyy":
        return b.year - a.year
    if interval == "m":
        return (b.year - a.year) * 12 + b.month - a.month
    if interval == "ww":  # week boundaries: both dates moved back to their week's Sunday
        a, b = (d - timedelta(days=(d.weekday() + 1) % 7) for d in (a, b))
        return _truncated((b - a) / timedelta(weeks=1))
    unit = {"d": timedelta(days=1), "h": timedelta(hours=1), "n": timedelta(minutes=1), "s": timedelta(seconds=1)}
    return _truncated((b - a) / unit[interval])


def _truncated(number: float) -> int:
    return int(number)  # toward zero, as Visual Basic's Fix


def date_from_num(value: Any) -> datetime:
    """DateFromNum: an Active Directory date (100 ns ticks since 1601, e.g. lastLogonTimestamp)."""
    try:
        ticks = int(value)
    except (TypeError, ValueError):
        raise _invalid("DateFromNum", "expects an Active Directory date number") from None
    try:
        return _AD_EPOCH + timedelta(microseconds=ticks // 10)
    except OverflowError:
        raise _invalid("DateFromNum", "the number is out of the range of dates") from None


def num_from_date(value: Any) -> int:
    """NumFromDate: a date as an Active Directory date number (for accountExpires-like fields)."""
    delta = to_date(value, "NumFromDate").astimezone(timezone.utc) - _AD_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 10_000_000 + delta.microseconds * 10


# ---- .NET custom date and time format strings --------------------------------------------------

_SPECIFIER = re.compile(r"'[^']*'|\"[^\"]*\"|\\.|%.|y+|M+|d+|H+|h+|m+|s+|f+|F+|t+|z+|K|.", re.DOTALL)


def _tokens(fmt: str) -> list[str]:
    tokens = []
    for token in _SPECIFIER.findall(fmt):
        if token[0] == "%" and len(token) == 2:  # %d: the single specifier d
            token = token[1]
        tokens.append(token)
    return tokens


def _literal(token: str) -> str | None:
    """The literal text a token stands for, or None when it is a specifier."""
    if token[0] in "'\"":
        return token[1:-1]
    if token[0] == "\\":
        return token[1]
    if token[0] in "yMdHhmsfFtzK":
        return None
    return token


_READ: dict[str, str] = {  # specifier → the regular expression that reads it (by its first letter and length)
    "y1": r"(?P<year>\d{1,2})", "y2": r"(?P<year>\d{2})", "y": r"(?P<year>\d{4,})",
    "M1": r"(?P<month>\d{1,2})", "M2": r"(?P<month>\d{2})", "M3": r"(?P<mon>[A-Za-z]{3})",
    "M": r"(?P<monthname>[A-Za-z]+)",
    "d1": r"(?P<day>\d{1,2})", "d2": r"(?P<day>\d{2})", "d3": r"[A-Za-z]{3}", "d": r"[A-Za-z]+",
    "H1": r"(?P<hour>\d{1,2})", "H": r"(?P<hour>\d{2})", "h1": r"(?P<hour12>\d{1,2})", "h": r"(?P<hour12>\d{2})",
    "m1": r"(?P<minute>\d{1,2})", "m": r"(?P<minute>\d{2})", "s1": r"(?P<second>\d{1,2})", "s": r"(?P<second>\d{2})",
    "t1": r"(?P<ampm>[AaPp])", "t": r"(?P<ampm>[AaPp][Mm])",
    "z1": r"(?P<offset>[+-]\d{1,2})", "z2": r"(?P<offset>[+-]\d{2})", "z": r"(?P<offset>[+-]\d{2}:\d{2})",
    "K": r"(?P<offset>Z|[+-]\d{2}:\d{2})?",
}


def _reader(token: str) -> str:
    kind, n = token[0], len(token)
    if kind in "fF":
        return rf"(?P<fraction>\d{{{n}}})" if kind == "f" else rf"(?P<fraction>\d{{0,{n}}})"
    for key in (f"{kind}{n}", kind):
        if key in _READ:
            return _READ[key]
    raise ValueError(f"unsupported format specifier {token!r}")


def parse_with_format(text: str, fmt: str) -> datetime:
    """Read `text` laid out as the .NET custom format `fmt`."""
    pattern, seen = [], set()
    for token in _tokens(fmt):
        literal = _literal(token)
        if literal is not None:
            pattern.append(re.escape(literal))
            continue
        regex = _reader(token)
        name = re.search(r"\?P<(\w+)>", regex)
        if name and name.group(1) in seen:  # a repeated field is read as text, then ignored
            regex = re.sub(r"\?P<\w+>", "?:", regex)
        elif name:
            seen.add(name.group(1))
        pattern.append(regex)
    found = re.fullmatch("".join(pattern), text.strip())
    if found is None:
        raise _invalid("FormatDateTime", "the value does not have the input format")
    parts = {k: v for k, v in found.groupdict().items() if v is not None}
    try:
        return _assemble(parts)
    except (ValueError, KeyError):
        raise _invalid("FormatDateTime", "the value is not a valid date") from None


def _assemble(parts: dict[str, str]) -> datetime:
    year = int(parts.get("year", 1))
    if len(parts.get("year", "0000")) <= 2:
        year += 2000 if year < 50 else 1900  # .NET's two-digit year window (1950–2049)
    if "monthname" in parts or "mon" in parts:
        name = parts.get("monthname") or parts["mon"]
        month = next(i for i, m in enumerate(_MONTHS, 1) if m.lower().startswith(name.lower()) and len(name) >= 3)
    else:
        month = int(parts.get("month", 1))
    hour = int(parts.get("hour", 0))
    if "hour12" in parts:
        hour = int(parts["hour12"]) % 12
        if parts.get("ampm", "A")[0] in "Pp":
            hour += 12
    fraction = parts.get("fraction", "")
    micro = int((fraction + "000000")[:6]) if fraction else 0
    offset = parts.get("offset")
    if offset and ":" not in offset and offset not in ("Z", "z"):
        offset += ":00"
    tz = _offset(offset) if offset else timezone.utc
    return datetime(year, month, int(parts.get("day", 1)), hour, int(parts.get("minute", 0)),
                    int(parts.get("second", 0)), micro, tzinfo=tz)


def format_date(value: datetime, fmt: str) -> str:
    """Write `value` in the .NET custom format `fmt` (English names, as .NET's invariant culture)."""
    out = []
    for token in _tokens(fmt):
        literal = _literal(token)
        out.append(literal if literal is not None else _writer(token)(value))
    return "".join(out)


def _writer(token: str) -> Callable[[datetime], str]:
    kind, n = token[0], len(token)
    offset = lambda d: d.utcoffset() or timedelta(0)  # noqa: E731

    def zone(d: datetime, width: str) -> str:
        minutes = int(offset(d).total_seconds() // 60)
        sign, minutes = ("-" if minutes < 0 else "+"), abs(minutes)
        if width == "zzz":
            return f"{sign}{minutes // 60:02}:{minutes % 60:02}"
        return f"{sign}{minutes // 60:02}" if width == "zz" else f"{sign}{minutes // 60}"

    writers: dict[str, Callable[[datetime], str]] = {
        "y": lambda d: f"{d.year % 100}" if n == 1 else f"{d.year % 100:02}" if n == 2 else f"{d.year:0{n}}",
        "M": lambda d: (f"{d.month}", f"{d.month:02}", _MONTHS[d.month - 1][:3], _MONTHS[d.month - 1])[min(n, 4) - 1],
        "d": lambda d: (f"{d.day}", f"{d.day:02}", _DAYS[d.weekday()][:3], _DAYS[d.weekday()])[min(n, 4) - 1],
        "H": lambda d: f"{d.hour}" if n == 1 else f"{d.hour:02}",
        "h": lambda d: f"{d.hour % 12 or 12}" if n == 1 else f"{d.hour % 12 or 12:02}",
        "m": lambda d: f"{d.minute}" if n == 1 else f"{d.minute:02}",
        "s": lambda d: f"{d.second}" if n == 1 else f"{d.second:02}",
        "f": lambda d: f"{d.microsecond:06}{'0' * n}"[:n],
        "F": lambda d: f"{d.microsecond:06}{'0' * n}"[:n].rstrip("0"),
        "t": lambda d: ("PM" if d.hour >= 12 else "AM")[:min(n, 2)],
        "z": lambda d: zone(d, "z" * min(n, 3)),
        "K": lambda d: "Z" if offset(d) == timedelta(0) else zone(d, "zzz"),
    }
    return writers[kind]


def check_format(fmt: str) -> str | None:
    """What is wrong with a format string, or None (for errors at parse time)."""
    try:
        for token in _tokens(fmt):
            if _literal(token) is None:
                _reader(token)
                if token[0] in "fF" and len(token) > 7:
                    return f"{token!r}: at most 7 fraction digits"
    except ValueError as exc:
        return str(exc)
    return None


def format_date_time(source: Any, input_format: Any, output_format: Any) -> str | None:
    """FormatDateTime(source, dateTimeStyles, inputFormat, outputFormat) without dateTimeStyles (the
    connector's default: round-trip the offset, allow surrounding white space)."""
    if source is None or source == "":
        return None
    date = source if isinstance(source, datetime) else parse_with_format(str(source), str(input_format))
    return format_date(date, str(output_format))
