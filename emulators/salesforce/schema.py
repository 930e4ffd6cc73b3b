"""The User and Profile fields the emulator knows, their limits and the restricted picklist values.

Lengths are from the User field reference; picklist values are a realistic subset (a real org's
`describe` is the authority). Note `de` is a valid LanguageLocaleKey and `de_DE` is not."""
from __future__ import annotations

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
}
USER_BOOLEAN_FIELDS = frozenset({"IsActive"})
# Readable but never writable through the API.
USER_READ_ONLY_FIELDS = frozenset({"Id", "Name", "CreatedDate", "LastModifiedDate", "SystemModstamp"})
USER_WRITABLE_FIELDS = frozenset(USER_STRING_FIELDS) | USER_BOOLEAN_FIELDS
USER_FIELDS = USER_WRITABLE_FIELDS | USER_READ_ONLY_FIELDS

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

PROFILE_FIELDS = frozenset({"Id", "Name", "UserLicenseId", "UserType"})

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

FIELD_LABELS = {
    "TimeZoneSidKey": "Time Zone",
    "LocaleSidKey": "Locale",
    "LanguageLocaleKey": "Language",
    "EmailEncodingKey": "Email Encoding",
    "CommunityNickname": "Nickname",
    "FederationIdentifier": "SAML Federation ID",
}


def canonical_names(known: frozenset[str]) -> dict[str, str]:
    """Lower-case name → API name: Salesforce field names are case-insensitive."""
    return {name.lower(): name for name in known}
