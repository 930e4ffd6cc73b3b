from pathlib import Path

import pytest

from emulators.graph.demo_tenant import seed_demo_tenant
from emulators.graph.tenant import Tenant
from shared.core.errors import ConfigurationError, PermanentError
from shared.core.mapping import MappingInput, default_salesforce_mapping
from shared.core.mapping_config import configured_mapping, load_mapping_file, parse_mapping
from shared.core.models import EntraUser

DEFAULT_FILE = Path(__file__).resolve().parents[2] / "config" / "mapping.default.toml"


def problems(text):
    with pytest.raises(ConfigurationError) as err:
        parse_mapping(text, origin="test.toml")
    return str(err.value)


def user(**attributes):
    return MappingInput(EntraUser("e1", attributes), ("Standard User",))


def test_default_file_maps_every_demo_tenant_user_exactly_as_the_built_in_default():
    tenant = Tenant()
    demo = seed_demo_tenant(tenant, users=200)
    from_file, built_in = load_mapping_file(DEFAULT_FILE), default_salesforce_mapping()
    names = {role_id: name for name, role_id in demo.app_role_ids.items()}
    compared = 0
    for user_id in demo.user_ids:
        attributes = tenant.find_user(user_id)
        if attributes is None:
            continue  # hard-deleted
        roles = tuple(sorted(names[r] for r in demo.expected_roles.get(user_id, ()) if names[r] != "msiam_access"))[:1]
        source = MappingInput(EntraUser(user_id, attributes), roles)
        assert from_file.apply(source) == built_in.apply(source), user_id
        assert [f.unique_candidates(source) for f in from_file.unique_fields] == \
            [f.unique_candidates(source) for f in built_in.unique_fields], user_id
        compared += 1
    assert compared > 150
    assert from_file.source_attributes == built_in.source_attributes
    assert from_file.salesforce_fields == built_in.salesforce_fields
    assert from_file.matching_fields == ("Username",)
    assert from_file.create_only_fields() == built_in.create_only_fields() == {"Alias", "CommunityNickname"}


def test_each_mapping_type_apply_mode_default_and_a_custom_field():
    mapping = parse_mapping('''
        [fields.Username]
        type = "Direct"
        source = "userPrincipalName"
        matching_priority = 1
        [fields.Office_Code__c]
        type = "Direct"
        source = "extensionAttribute10"
        default = "HQ"
        [fields.CompanyName]
        type = "Constant"
        value = "Contoso"
        apply = "on-create"
        [fields.Department]
        type = "None"
        default = "Unassigned"
        [fields.CommunityNickname]
        type = "Expression"
        expression = """SelectUniqueValue(
            ToLower(NormalizeDiacritics(StripSpaces(Join(".", [givenName], [surname])))),
            ToLower(NormalizeDiacritics(StripSpaces(Join(".", [givenName], [surname], Mid([id], 1, 4))))))"""
        apply = "on-create"
    ''')
    source = MappingInput(EntraUser("e1", {"userPrincipalName": "Zoe@x.com", "givenName": "Zoë", "surname": "Ång Ström",
                                           "id": "abcd-1234"}),
                          (), is_unique=lambda field, value: (field, value) != ("CommunityNickname", "zoe.angstrom"))
    assert mapping.apply(source) == {
        "Username": "Zoe@x.com", "Office_Code__c": "HQ", "CompanyName": "Contoso", "Department": "Unassigned",
        "CommunityNickname": "zoe.angstrom.abcd",
    }
    assert mapping.create_only_fields() == {"CompanyName", "CommunityNickname"}
    assert {"extensionAttribute10", "givenName", "surname", "id"} <= set(mapping.source_attributes)
    assert "Office_Code__c" in mapping.salesforce_fields


def test_several_matching_attributes_in_priority_order():
    mapping = parse_mapping('''
        [fields.Email]
        type = "Direct"
        source = "mail"
        matching_priority = 3
        [fields.Username]
        type = "Expression"
        expression = "ToLower([userPrincipalName])"
        matching_priority = 1
        [fields.FederationIdentifier]
        type = "Direct"
        source = "onPremisesImmutableId"
        matching_priority = 2
    ''')
    assert mapping.matching_fields == ("Username", "FederationIdentifier", "Email")
    assert mapping.matching_field == "Username"


def test_scoping_filters_from_the_file():
    mapping = parse_mapping('''
        [fields.Username]
        type = "Direct"
        source = "userPrincipalName"
        matching_priority = 1

        [[scoping.filter]]
        clause = [
          { attribute = "department", operator = "EQUALS", value = "Sales" },
          { attribute = "employeeId", operator = "Greater_Than_OR_EQUALS", value = 1000 },
        ]

        [[scoping.filter]]
        [[scoping.filter.clause]]
        attribute = "userPrincipalName"
        operator = "ENDS_WITH"
        value = "@partners.contoso.com"
    ''')
    scope = mapping.scoping
    assert scope.in_scope(EntraUser("1", {"department": "Sales", "employeeId": "1500"}))
    assert not scope.in_scope(EntraUser("2", {"department": "Sales", "employeeId": "999"}))
    assert scope.in_scope(EntraUser("3", {"userPrincipalName": "x@partners.contoso.com"}))
    assert {"department", "employeeId"} <= set(mapping.source_attributes)


def test_every_problem_is_listed_with_its_field():
    message = problems('''
        extra = 1
        [fields.Username]
        type = "Direct"
        source = "userPrincipalName"
        matching_priority = 1
        [fields.Alias]
        type = "Expression"
        expression = "Mid([userPrincipalName], 1)"
        [fields.Nick]
        type = "Expression"
        expression = """Append(
          [givenName], frob([x]))"""
        [fields.IsActive]
        type = "Constant"
        value = true
        [fields.Email]
        type = "Direct"
        source = "mail"
        expresion = "x"
        matching_priority = 1
        [fields.Title]
        type = "Formula"
        [fields.Phone]
        type = "Constant"
        apply = "sometimes"
        [fields."Bad Name"]
        type = "None"
        default = "x"
        [fields.Dept]
        type = "None"
        [[scoping.filter]]
        clause = [ { attribute = "department", operator = "LIKE", value = "x" } ]
    ''')
    for expected in [
        "unknown top-level key 'extra'",
        "fields.Alias: expression line 1, column 1: Mid takes 3 arguments, got 2",
        "fields.Nick: expression line 2, column 24: unknown function frob",
        "fields.IsActive: cannot be mapped: scope decides it",
        "fields.Email: unknown key 'expresion'",
        "fields.Email: matching_priority 1 is also Username's",
        "fields.Title: type must be one of Direct, Constant, Expression, None, got 'Formula'",
        "fields.Phone: a Constant mapping needs 'value'",
        "fields.Phone: apply must be 'always' or 'on-create', got 'sometimes'",
        "fields.Bad Name: not a Salesforce field API name",
        "fields.Dept: a None mapping without a default sends nothing",
        "scoping.filter #1 clause #1: unknown operator 'LIKE'",
    ]:
        assert expected in message, (expected, message)
    assert message.startswith("test.toml: 12 problem(s)")


def test_structural_problems():
    assert "no field has a matching_priority" in problems('[fields.Email]\ntype = "Direct"\nsource = "mail"\n')
    assert "the mapping maps nothing" in problems("")
    assert "not valid TOML" in problems("[fields.Email\n")
    assert "SelectUniqueValue cannot be used on a matching attribute" in problems(
        '[fields.Username]\ntype = "Expression"\nexpression = "SelectUniqueValue([a], [b])"\nmatching_priority = 1\n')
    assert "is not a Graph user property" in problems(
        '[fields.Username]\ntype = "Direct"\nsource = "appRoleAssignments"\nmatching_priority = 1\n')
    assert "scoping.filter #1: needs clause" in problems(
        '[fields.Username]\ntype = "Direct"\nsource = "upn"\nmatching_priority = 1\n[[scoping.filter]]\n')


def test_unreadable_file_names_the_file(tmp_path):
    with pytest.raises(ConfigurationError, match="cannot read it"):
        load_mapping_file(tmp_path / "missing.toml")


def test_a_data_problem_in_an_expression_is_a_permanent_error_for_that_user():
    mapping = parse_mapping('[fields.Username]\ntype = "Expression"\nexpression = "ToLower([otherMails])"\nmatching_priority = 1\n')
    with pytest.raises(PermanentError):
        mapping.apply(user(otherMails=["a@x", "b@x"]))


def test_the_mapping_file_setting(tmp_path):
    root = DEFAULT_FILE.parents[1]
    assert configured_mapping("", root).matching_fields == ("Username",)  # built-in default
    assert configured_mapping("config/mapping.default.toml", root).source_attributes == \
        default_salesforce_mapping().source_attributes
    custom = tmp_path / "m.toml"
    custom.write_text('[fields.Username]\ntype = "Direct"\nsource = "mail"\nmatching_priority = 1\n', encoding="utf-8")
    assert configured_mapping(str(custom), root).source_attributes == ("accountEnabled", "id", "mail", "userPrincipalName")
    with pytest.raises(ConfigurationError, match="nope.toml"):
        configured_mapping("nope.toml", root)


def test_a_role_by_name_from_a_switch_reads_and_writes_user_role_id():
    text = DEFAULT_FILE.read_text(encoding="utf-8") + '''
[fields.UserRoleName]
type = "Expression"
expression = 'Switch([department], "", "Sales", "Western Sales", "Support", "Support_US")'
'''
    mapping = parse_mapping(text)
    assert "department" in mapping.source_attributes
    assert "UserRoleId" in mapping.salesforce_fields and "UserRoleName" not in mapping.salesforce_fields
    assert mapping.apply(user(userPrincipalName="a@contoso.com", department="Sales"))["UserRoleName"] == "Western Sales"
    assert "UserRoleName" not in mapping.apply(user(userPrincipalName="a@contoso.com", department="Finance"))

    both = text + '''
[fields.UserRoleId]
type = "Constant"
value = "00E000000000001AAA"
'''
    assert "fields.UserRoleName and fields.UserRoleId both set the user's role" in problems(both)
