"""Dotted paths into complex Graph properties (employeeOrgData.division, onPremisesExtensionAttributes.
extensionAttribute1) in mappings and scoping filters, and the top-level properties they $select."""
import pytest

from shared.core.errors import ConfigurationError
from shared.core.expressions import ExpressionError, parse_expression
from shared.core.mapping import MappingInput
from shared.core.mapping_config import parse_mapping
from shared.core.models import EntraUser, selectable
from shared.core.scoping import scoping_clause

USER = EntraUser("e1", {
    "userPrincipalName": "ann@contoso.com",
    "employeeOrgData": {"division": "EMEA", "costCenter": "CC-42"},
    "onPremisesExtensionAttributes": {"extensionAttribute1": "Contractor", "extensionAttribute2": None},
    "odd.key": "a property whose name has a dot",
})


def test_entra_user_reads_a_dotted_path_and_missing_parts_are_null():
    assert USER.get("employeeOrgData.division") == "EMEA"
    assert USER.get("onPremisesExtensionAttributes.extensionAttribute1") == "Contractor"
    assert USER.get("onPremisesExtensionAttributes.extensionAttribute2") is None
    assert USER.get("employeeOrgData.region") is None  # not set
    assert USER.get("manager.displayName", "-") == "-"  # the complex property itself is absent
    assert USER.get("userPrincipalName.length") is None  # a string has no parts
    assert USER.get("odd.key") == "a property whose name has a dot"  # an exact name wins
    assert selectable("employeeOrgData.costCenter") == "employeeOrgData" and selectable("mail") == "mail"


def test_direct_expression_and_scoping_use_paths_and_select_their_top_level_properties():
    mapping = parse_mapping('''
        [fields.Username]
        type = "Direct"
        source = "userPrincipalName"
        matching_priority = 1
        [fields.Division]
        type = "Direct"
        source = "employeeOrgData.division"
        [fields.Worker_Type__c]
        type = "Expression"
        expression = 'ToUpper([onPremisesExtensionAttributes.extensionAttribute1])'

        [[scoping.filter]]
        clause = [{ attribute = "employeeOrgData.costCenter", operator = "EQUALS", value = "CC-42" }]
    ''')
    source = MappingInput(USER, ())
    assert mapping.apply(source) == {"Username": "ann@contoso.com", "Division": "EMEA", "Worker_Type__c": "CONTRACTOR"}
    assert mapping.scoping.in_scope(USER)
    assert not mapping.scoping.in_scope(EntraUser("e2", {"employeeOrgData": {"costCenter": "CC-7"}}))
    assert not mapping.scoping.in_scope(EntraUser("e3", {}))
    selected = set(mapping.source_attributes)
    assert {"employeeOrgData", "onPremisesExtensionAttributes"} <= selected
    assert not any("." in name for name in selected)  # Graph cannot $select a part of a complex property


def test_a_scoping_clause_tests_the_value_at_the_path():
    assert scoping_clause("onPremisesExtensionAttributes.extensionAttribute1", "ENDS_WITH", "tor").holds(USER)
    assert scoping_clause("employeeOrgData.region", "IS NULL").holds(USER)
    assert not scoping_clause("employeeOrgData", "EQUALS", "EMEA").holds(USER)  # an object is not a value
    with pytest.raises(ValueError, match="dotted path"):
        scoping_clause("employeeOrgData..division", "IS NULL")


def test_malformed_paths_are_refused_with_where_they_are():
    with pytest.raises(ExpressionError) as err:
        parse_expression('Append("x", [employeeOrgData.])')
    assert (err.value.line, err.value.column) == (1, 13) and "employeeOrgData." in err.value.message
    with pytest.raises(ConfigurationError) as problems:
        parse_mapping('[fields.Username]\ntype = "Direct"\nsource = "userPrincipalName"\nmatching_priority = 1\n'
                      '[fields.Division]\ntype = "Direct"\nsource = "employeeOrgData/division"\n')
    assert "fields.Division: source 'employeeOrgData/division' is not a Graph user property" in str(problems.value)
