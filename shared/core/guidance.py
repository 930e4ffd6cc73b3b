"""What an admin should do about each failure, in the words of Entra's Salesforce tutorial where it has
words for it. Keyed by the vendor's error code; used by the failure emails."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Guidance:
    connector_code: str  # the name Entra's provisioning logs use, for admins moving from the connector
    advice: str


_GUIDANCE: dict[str, Guidance] = {
    "LICENSE_LIMIT_EXCEEDED": Guidance(
        "SalesforceLicenseLimitExceeded",
        "The user could not be created in Salesforce because there are no available licenses for this user. "
        "Either procure additional licenses, or review your user assignments to ensure that the correct users "
        "are assigned. The user was retried every LICENSE_RETRY_SECONDS (6 hours by default) before this email.",
    ),
    "DUPLICATE_USERNAME": Guidance(
        "SalesforceDuplicateUserName",
        "The Salesforce Username (by default the user's userPrincipalName) is already used in another Salesforce "
        "org; Usernames must be unique across all orgs, and inactive users keep theirs. Rename the user in the "
        "other org if you administer it, map Username to another value (e.g. append a suffix), or remove the "
        "user's assignment to the Salesforce app.",
    ),
    "REQUIRED_FIELD_MISSING": Guidance(
        "SalesforceRequiredFieldMissing",
        "Salesforce requires certain attributes (such as email and alias) to create or update a user, and this "
        "user is missing one of them. Populate it in Entra ID, give the mapping a default value, or scope such "
        "users out with a scoping filter.",
    ),
    "DUPLICATE_COMM_NICKNAME": Guidance(
        "SalesforceDuplicateNickname",
        "Another Salesforce user already has this CommunityNickname. Map it with SelectUniqueValue (the default "
        "mapping does) so a free one is picked, or leave it unmapped so Salesforce generates one.",
    ),
    "NoUniqueValue": Guidance(
        "SalesforceNoUniqueValue",
        "Every SelectUniqueValue candidate of the named field (e.g. Alias, CommunityNickname) is already taken "
        "in Salesforce. Add candidates to the field's expression in the mapping file (more digits, another part "
        "of the name), or free one of the values in Salesforce.",
    ),
    "STRING_TOO_LONG": Guidance(
        "SalesforceStringTooLong",
        "A mapped value is longer than the Salesforce field allows (e.g. Alias 8, FirstName 40, LastName 80, "
        "Username 80). Shorten it in Entra ID or use Left()/Mid() in the mapping.",
    ),
    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST": Guidance(
        "SalesforceInvalidPicklistValue",
        "A locale, language, time zone or email encoding value is not one Salesforce accepts. Fix the user's "
        "preferredLanguage in Entra ID or the mapping's constant.",
    ),
    "FIELD_INTEGRITY_EXCEPTION": Guidance(
        "SalesforceFieldIntegrity",
        "Salesforce rejected a value (for example a Username that is not in the form of an email address, or a "
        "user who cannot be deactivated because a workflow, queue or default setting names them). Read the "
        "message, then fix the value or the Salesforce setting.",
    ),
    "INVALID_EMAIL_ADDRESS": Guidance(
        "SalesforceInvalidEmail",
        "The user's mail (mapped to Email) is not in the form of an email address. Fix it in Entra ID or map "
        "Email from another attribute.",
    ),
    "INVALID_TYPE_ON_FIELD_IN_RECORD": Guidance(
        "SalesforceInvalidFieldType",
        "A mapped value is not text where Salesforce expects text (the field is named in the message). Check the "
        "mapping's expression or constant for that field, and the user's attribute in Entra ID.",
    ),
    "InvalidEntraAttribute": Guidance(
        "EntraInvalidAttributeValue",
        "Entra ID returned an attribute value of the wrong type (the attribute is named in the message), so the "
        "user's state could not be decided and nothing was changed. Check the user in Entra ID and any proxy in "
        "front of Microsoft Graph.",
    ),
    "INVALID_CROSS_REFERENCE_KEY": Guidance(
        "SalesforceInvalidReference",
        "A referenced record (usually the Profile) does not exist in Salesforce. Check the app role names "
        "against the org's profiles.",
    ),
    "ProfileNotFound": Guidance(
        "SalesforceProfileNotFound",
        "The user's app role names a Salesforce profile the org does not have. Re-import profiles as app roles "
        "or fix the role's display name.",
    ),
    "PermissionSetNotFound": Guidance(
        "SalesforcePermissionSetNotFound",
        "The mapping grants the user a permission set (by Name) or permission set group (by DeveloperName) that "
        "the org does not have. The Salesforce user itself was provisioned. Fix the name in the mapping file, or "
        "create it in Salesforce, then provision the user on demand (python -m cli check lists what is missing).",
    ),
    "UserRoleNotFound": Guidance(
        "SalesforceRoleNotFound",
        "The mapping's UserRoleName names a Salesforce role the org does not have (by Name or DeveloperName). "
        "Fix the mapping, or create the role in Salesforce (Setup → Roles).",
    ),
    "AmbiguousUserRole": Guidance(
        "SalesforceRoleAmbiguous",
        "Several Salesforce roles share the Name the mapping gives. Map the role's DeveloperName instead "
        "(it is unique).",
    ),
    "AmbiguousAppRoleAssignment": Guidance(
        "SalesforceMultipleAppRoleAssignments",
        "The user holds more than one Salesforce app role (directly or through groups). Keep one role per user, "
        "or set PROFILE_PRIORITY to say which profile wins.",
    ),
    "InvalidMessage": Guidance(
        "InvalidQueueMessage",
        "A message on the provisioning queue could not be understood. It was not applied; if something other "
        "than this app writes to the queue, fix that producer.",
    ),
    "RetriesExhausted": Guidance(
        "RetriesExhausted",
        "A temporary failure (Salesforce or Graph unavailable, throttled or locked) persisted through every "
        "retry. Check service health and API limits; the next detection cycle or a replay of this message "
        "provisions the user again.",
    ),
    "MaxDeliveryCountExceeded": Guidance(
        "MaxDeliveryCountExceeded",
        "The message failed on every delivery without a recorded reason (the function itself crashed). Look up "
        "the invocation in Application Insights by the message id, fix the cause, then replay the message.",
    ),
}

_UNKNOWN = Guidance(
    "SalesforceError",
    "Salesforce rejected the operation. Read the message and error code, fix the data or the org setting, then "
    "replay the dead-lettered message or wait for the next cycle.",
)


def guidance_for(code: str) -> Guidance:
    return _GUIDANCE.get(code, _UNKNOWN)
