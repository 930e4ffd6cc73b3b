"""The User and Profile fields the emulator knows. Required fields, lengths and the restricted picklist
values are the app's own pre-call rules (shared/core/salesforce_rules.py), kept in one place so the
emulator and the checks never drift apart."""
from __future__ import annotations

from shared.core.salesforce_rules import REQUIRED_ON_CREATE, RESTRICTED_PICKLISTS, USER_STRING_FIELDS

__all__ = ["REQUIRED_ON_CREATE", "RESTRICTED_PICKLISTS", "USER_STRING_FIELDS"]

USER_BOOLEAN_FIELDS = frozenset({"IsActive"})
# Readable but never writable through the API.
USER_READ_ONLY_FIELDS = frozenset({"Id", "Name", "CreatedDate", "LastModifiedDate", "SystemModstamp"})
USER_WRITABLE_FIELDS = frozenset(USER_STRING_FIELDS) | USER_BOOLEAN_FIELDS
USER_FIELDS = USER_WRITABLE_FIELDS | USER_READ_ONLY_FIELDS

PROFILE_FIELDS = frozenset({"Id", "Name", "UserLicenseId", "UserType"})
USER_ROLE_FIELDS = frozenset({"Id", "Name", "DeveloperName", "ParentRoleId"})

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
