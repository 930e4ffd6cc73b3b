"""The User rules a Salesforce org enforces, checked before the call: the nine fields required on create,
text values and their maximum lengths (in UTF-16 units), the restricted picklists and the email format
of Username and Email, plus the conversion of Entra's language tags (`de-DE`)
to Salesforce's picklist values. A record that would fail gets the error Salesforce would have returned,
naming the field, and costs no API call.

The value sets are a realistic subset (a real org's `describe` is the authority); the Salesforce emulator
imports them from here so the two never disagree."""
from __future__ import annotations

import re
from typing import Any, Mapping

from .errors import PermanentError, ProvisioningError

# Salesforce's check of Username (FIELD_INTEGRITY_EXCEPTION) and Email (INVALID_EMAIL_ADDRESS) formats.
EMAIL_FORMAT = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

REQUIRED_ON_CREATE = (
    "Username",
    "LastName",
    "Email",
    "Alias",
    "TimeZoneSidKey",
    "LocaleSidKey",
    "EmailEncodingKey",
    "LanguageLocaleKey",
    "ProfileId",
)

USER_STRING_FIELDS: dict[str, int] = {
    "Username": 80,
    "Alias": 8,
    "FirstName": 40,
    "LastName": 80,
    "Email": 128,
    "CommunityNickname": 40,
    "FederationIdentifier": 512,
    "EmployeeNumber": 20,
    "CompanyName": 80,
    "Department": 80,
    "Division": 80,
    "Title": 80,
    "City": 40,
    "State": 80,
    "Country": 80,
    "PostalCode": 20,
    "Street": 255,
    "Phone": 40,
    "MobilePhone": 40,
    "Fax": 40,
    "Extension": 40,
    "TimeZoneSidKey": 40,
    "LocaleSidKey": 40,
    "LanguageLocaleKey": 40,
    "EmailEncodingKey": 40,
    "ProfileId": 18,
    "ManagerId": 18,
    "UserRoleId": 18,
}

RESTRICTED_PICKLISTS: dict[str, frozenset[str]] = {
    "TimeZoneSidKey": frozenset(
        {
            "America/Los_Angeles", "America/New_York", "America/Chicago", "America/Denver", "America/Phoenix",
            "America/Anchorage", "America/Sao_Paulo", "America/Argentina/Buenos_Aires", "America/Toronto",
            "Europe/London", "Europe/Dublin", "Europe/Paris", "Europe/Berlin", "Europe/Amsterdam",
            "Europe/Madrid", "Europe/Rome", "Europe/Stockholm", "Europe/Zurich", "Europe/Warsaw",
            "Europe/Helsinki", "Europe/Istanbul", "Asia/Dubai", "Asia/Kolkata", "Asia/Singapore",
            "Asia/Shanghai", "Asia/Hong_Kong", "Asia/Tokyo", "Asia/Seoul", "Australia/Sydney",
            "Pacific/Auckland", "Pacific/Honolulu", "GMT",
        }
    ),
    "LocaleSidKey": frozenset(
        {
            "en_US", "en_GB", "en_CA", "en_AU", "en_IE", "en_IN", "en_NZ", "de_DE", "de_AT", "de_CH",
            "fr_FR", "fr_CA", "fr_BE", "es_ES", "es_MX", "it_IT", "nl_NL", "sv_SE", "da_DK", "fi_FI",
            "no_NO", "pl_PL", "pt_BR", "pt_PT", "ja_JP", "ko_KR", "zh_CN", "zh_TW", "iw_IL", "in_ID",
            "sh_ME_USD", "zh_CN_PINYIN",
        }
    ),
    # Note `de` is a valid language and `de_DE` is not.
    "LanguageLocaleKey": frozenset(
        {
            "en_US", "en_GB", "de", "fr", "es", "es_MX", "it", "ja", "ko", "zh_CN", "zh_TW", "pt_BR",
            "nl_NL", "sv", "da", "fi", "no", "ru", "th",
        }
    ),
    "EmailEncodingKey": frozenset(
        {"UTF-8", "ISO-8859-1", "Shift_JIS", "ISO-2022-JP", "EUC-JP", "ks_c_5601-1987", "Big5", "GB2312", "Big5-HKSCS"}
    ),
}

# Salesforce kept Java's old ISO 639 codes: Hebrew is `iw`, Indonesian `in`; Norwegian Bokmål is `no`.
_LEGACY_LANGUAGE = {"he": "iw", "id": "in", "nb": "no"}

# Codes on which a licence must free up before a retry can succeed: parked, retried hours later.
PARKED_CODES = frozenset({"LICENSE_LIMIT_EXCEEDED"})


def salesforce_length(value: str) -> int:
    """A text value's length as Salesforce counts it against a field's maximum: in UTF-16 code units
    (Java strings), so an emoji or another character outside the BMP counts twice (Salesforce Help
    005166849, "Surrogate Pair Characters Are Treated as Two Characters")."""
    return len(value.encode("utf-16-le", errors="surrogatepass")) // 2


def fields_with_invalid_text(record: Mapping[str, Any]) -> list[str]:
    """Fields whose text holds a lone UTF-16 surrogate: JSON allows "\\ud800", UTF-8 (a URL, a request
    body, Salesforce's storage) cannot carry it."""
    broken = []
    for field, value in record.items():
        if isinstance(value, str) and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                broken.append(field)
    return broken


def is_parked(error: ProvisioningError) -> bool:
    """A failure that waits for a licence rather than for a person or a flaky network."""
    return error.code in PARKED_CODES


def _candidates(tag: str) -> list[str]:
    """Entra's `de-DE` / `de_de` as Salesforce spellings, most specific first: de_DE, de."""
    parts = tag.strip().replace("-", "_").split("_")
    language = _LEGACY_LANGUAGE.get(parts[0].lower(), parts[0].lower())
    rest = [p.upper() if len(p) == 2 else p for p in parts[1:]]
    return ["_".join([language, *rest[:i]]) for i in range(len(rest), -1, -1)]


def picklist_value(field: str, value: Any) -> Any:
    """The restricted picklist value `value` stands for, or the value unchanged when none fits.
    Locale keeps the country (`en-US` → `en_US`); Language takes the most specific valid code
    (`de-DE` → `de`, `pt-BR` → `pt_BR`)."""
    allowed = RESTRICTED_PICKLISTS.get(field)
    if allowed is None or not isinstance(value, str) or value in allowed:
        return value
    if field in ("LocaleSidKey", "LanguageLocaleKey"):
        for candidate in _candidates(value):
            if candidate in allowed:
                return candidate
    return value


def normalize_picklists(record: Mapping[str, Any], defaults: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Each restricted picklist value converted; one that is still not valid falls back to the mapping's
    default for that field (when the default is valid), else stays for `check_user_record` to name.
    Returns the record and the fields that fell back, for the caller to log."""
    out = dict(record)
    fell_back: list[str] = []
    for field, allowed in RESTRICTED_PICKLISTS.items():
        if not isinstance(out.get(field), str) or out[field] == "":
            continue  # absent, or not text: check_user_record names the field
        value = picklist_value(field, out[field])
        if value not in allowed and defaults.get(field) in allowed:
            value = defaults[field]
            fell_back.append(field)
        out[field] = value
    return out, tuple(fell_back)


def check_user_record(record: Mapping[str, Any], *, creating: bool) -> PermanentError | None:
    """The error Salesforce would return for this User create/update payload, or None if it would pass.
    An update payload carries only the changed fields: a required field is missing there when cleared."""
    required = REQUIRED_ON_CREATE if creating else tuple(f for f in REQUIRED_ON_CREATE if f in record)
    missing = [f for f in required if record.get(f) in (None, "")]
    if missing:
        return PermanentError("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]",
                              system="salesforce", fields=missing)
    for field, value in record.items():
        limit = USER_STRING_FIELDS.get(field)
        if limit is not None and value is not None and not isinstance(value, str):
            # Messages name the field and the type, never the value (it may be personal data).
            return PermanentError("INVALID_TYPE_ON_FIELD_IN_RECORD",
                                  f"{field}: value not of required type: {type(value).__name__}, expected text",
                                  system="salesforce", fields=[field])
        if limit is not None and isinstance(value, str) and salesforce_length(value) > limit:
            return PermanentError("STRING_TOO_LONG", f"{field}: data value too large (max length={limit})",
                                  system="salesforce", fields=[field])
        allowed = RESTRICTED_PICKLISTS.get(field)
        if allowed is not None and value not in (None, "") and value not in allowed:
            return PermanentError("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                                  f"{field}: bad value for restricted picklist field: {value}",
                                  system="salesforce", fields=[field])
    if record.get("Username") and not EMAIL_FORMAT.match(record["Username"]):
        return PermanentError("FIELD_INTEGRITY_EXCEPTION", "Username must be in the form of an email address "
                              "(for example, john@acme.com): Username", system="salesforce", fields=["Username"])
    if record.get("Email") and not EMAIL_FORMAT.match(record["Email"]):
        return PermanentError("INVALID_EMAIL_ADDRESS", "Email: invalid email address", system="salesforce",
                              fields=["Email"])
    return None
