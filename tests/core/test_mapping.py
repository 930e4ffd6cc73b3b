import pytest

from shared.core.errors import PermanentError
from shared.core.mapping import (
    MappingInput,
    default_salesforce_mapping,
    fields_hash,
    resolve_role_names,
    user_role_id,
)
from shared.core.models import AppRole, EntraUser, SalesforceRole

ROLES = {
    "r-std": AppRole("r-std", "Standard User"),
    "r-adm": AppRole("r-adm", "System Administrator"),
    "00000000-0000-0000-0000-000000000000": AppRole("00000000-0000-0000-0000-000000000000", "Default Access"),
}


def apply(attrs, roles=("Standard User",)):
    return default_salesforce_mapping().apply(MappingInput(EntraUser("e1", attrs), tuple(roles)))


def test_connector_defaults_for_a_full_user():
    out = apply({"userPrincipalName": "O'Brien.Long@Contoso.com", "mail": "obrien@contoso.com",
                 "givenName": "Seán", "surname": "O'Brien", "preferredLanguage": "de-DE"})
    assert out == {
        "Username": "o'brien.long@contoso.com",
        "Alias": "sobrien",
        "CommunityNickname": "O'Brien.Long",
        "Email": "obrien@contoso.com",
        "FirstName": "Seán",
        "LastName": "O'Brien",
        "LocaleSidKey": "de_DE",
        "ProfileName": "Standard User",
        "EmailEncodingKey": "ISO-8859-1",
        "LanguageLocaleKey": "en_US",
        "TimeZoneSidKey": "America/Los_Angeles",
    }


def test_defaults_fill_missing_values_and_missing_mail_stays_missing():
    out = apply({"userPrincipalName": "x@contoso.com", "surname": "", "preferredLanguage": None}, roles=())
    assert out["LastName"] == "."
    assert out["LocaleSidKey"] == "en_US"
    assert out["ProfileName"] == "Chatter Free User"
    assert "Email" not in out and "FirstName" not in out


def test_default_alias_and_nickname_candidates_in_order():
    m = default_salesforce_mapping()
    source = MappingInput(EntraUser("0f1e2d3c-aaaa-bbbb-cccc-000000000001", {
        "id": "0f1e2d3c-aaaa-bbbb-cccc-000000000001", "userPrincipalName": "Zoe.Lindqvist-Ahlberg@contoso.com",
        "givenName": "Zoë", "surname": "Lindqvist-Åhlberg"}), ())
    alias, nickname = (f.unique_candidates(source) for f in m.unique_fields)
    assert [f.target for f in m.unique_fields] == ["Alias", "CommunityNickname"]
    assert alias == ("zlindqvi", *(f"zlindqv{n}" for n in range(1, 10)), "Zoe.Lind", "0f1e2d3c")
    assert all(len(a) <= 8 for a in alias)
    assert nickname == ("Zoe.Lindqvist-Ahlberg", "Zoe.Lindqvist-Ahlberg.0f1e2d3c", "Zoe.0f1e2d3c-aaaa-bbbb-cccc-000000000001")
    assert all(len(n) <= 40 for n in nickname)
    assert m.create_only_fields() == {"Alias", "CommunityNickname"}


def test_default_alias_without_usable_name_falls_back_to_the_upn_then_the_object_id():
    m = default_salesforce_mapping()
    source = MappingInput(EntraUser("e1", {"id": "9a8b7c6d-0000", "userPrincipalName": "svc-backup@contoso.com",
                                           "givenName": "王", "surname": "小明"}), ())
    alias = m.unique_fields[0].unique_candidates(source)
    assert alias == ("svc-back", "9a8b7c6d")  # a script NormalizeDiacritics cannot turn into A-Z gives no name


def test_select_and_salesforce_fields_cover_the_mapping():
    m = default_salesforce_mapping()
    assert {"userPrincipalName", "mail", "givenName", "surname", "preferredLanguage", "accountEnabled"} <= set(m.source_attributes)
    assert "ProfileName" not in m.salesforce_fields and "ProfileId" in m.salesforce_fields
    assert m.matching_field == "Username"


def test_role_resolution_ignores_default_access_and_uses_priority():
    assert resolve_role_names(frozenset({"r-std", "00000000-0000-0000-0000-000000000000"}), ROLES, ()) == ("Standard User",)
    assert resolve_role_names(frozenset({"r-std", "r-adm"}), ROLES, ("Standard User", "System Administrator")) == ("Standard User",)
    with pytest.raises(PermanentError) as err:
        resolve_role_names(frozenset({"r-std", "r-adm"}), ROLES, ())
    assert err.value.code == "AmbiguousAppRoleAssignment"


def test_fields_hash_is_order_independent():
    assert fields_hash({"a": 1, "b": "x"}) == fields_hash({"b": "x", "a": 1}) != fields_hash({"a": 2, "b": "x"})


def test_user_role_name_resolves_by_name_or_developer_name_and_fails_clearly():
    roles = [SalesforceRole("00E000000000001AAA", "Western Sales", "WesternSales"),
             SalesforceRole("00E000000000002AAA", "Support", "Support_EMEA"),
             SalesforceRole("00E000000000003AAA", "Support", "Support_US")]
    assert user_role_id("Western Sales", roles) == "00E000000000001AAA"
    assert user_role_id("Support_US", roles) == "00E000000000003AAA"
    with pytest.raises(PermanentError, match="no Salesforce role named 'Eastern Sales'") as unknown:
        user_role_id("Eastern Sales", roles)
    assert unknown.value.code == "UserRoleNotFound"
    with pytest.raises(PermanentError, match="Support_EMEA, Support_US") as shared_name:
        user_role_id("Support", roles)
    assert shared_name.value.code == "AmbiguousUserRole"
    with pytest.raises(PermanentError):
        user_role_id("western sales", roles)  # Salesforce names are matched exactly, like profile names
