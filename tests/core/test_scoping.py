import pytest

from shared.core.errors import PermanentError
from shared.core.mapping import default_salesforce_mapping
from shared.core.models import EntraUser, EntraUserState, SalesforceUser, UserLink
from shared.core.planning import index_for_matching, match_by_precedence, out_of_scope_reason
from shared.core.scoping import ScopingFilter, ScopingFilters, scoping_clause


def holds(operator, value, attribute_value, name="a"):
    attrs = {} if attribute_value is ... else {name: attribute_value}
    return scoping_clause(name, operator, value).holds(EntraUser("u1", attrs))


@pytest.mark.parametrize(
    ("operator", "value", "true_for", "false_for"),
    [
        ("EQUALS", "Sales", "Sales", "sales"),  # case-sensitive
        ("NOT EQUALS", "Sales", "sales", "Sales"),
        ("IS TRUE", None, True, False),
        ("IS FALSE", None, False, True),
        ("Includes", "ale", "Sales", "SALES"),
        ("ENDS_WITH", "@contoso.com", "ann@contoso.com", "ann@contoso.com.evil"),
        ("REGEX MATCH", r".*\@contoso.com", "ann@contoso.com", "ann@fabrikam.com"),
        ("NOT REGEX MATCH", r".*\@contoso.com", "ann@fabrikam.com", "ann@contoso.com"),
        ("Greater_Than", 10, "11", "10"),
        ("Greater_Than_OR_EQUALS", 10, 10, "9"),
        ("&", "Sales,Support", "Sales", "Finance"),
        ("!&", "Sales,Support", "Finance", "Support"),
        ("IS NULL", None, "", "x"),
        ("IS NOT NULL", None, "x", ""),
    ],
)
def test_each_operator(operator, value, true_for, false_for):
    assert holds(operator, value, true_for) is True
    assert holds(operator, value, false_for) is False


@pytest.mark.parametrize("operator", ["EQUALS", "NOT EQUALS", "Includes", "ENDS_WITH", "NOT REGEX MATCH", "!&"])
def test_a_null_attribute_fails_every_value_clause(operator):
    assert holds(operator, "x", ...) is False
    assert holds(operator, "x", None) is False


def test_null_operators_and_booleans_read_graph_values():
    assert holds("IS NULL", None, ...) is True and holds("IS NOT NULL", None, None) is False
    assert holds("IS TRUE", None, "true") is True and holds("IS TRUE", None, None) is False
    assert holds("Greater_Than", 5, "not a number") is False
    assert holds("EQUALS", "True", True) is True  # booleans compare as the connector shows them


def test_multi_valued_attributes_never_match():
    assert holds("Includes", "a", ["a", "b"]) is False


def test_clauses_are_anded_and_filters_ored():
    ny_eng = ScopingFilter((scoping_clause("state", "EQUALS", "New York"), scoping_clause("department", "EQUALS", "Engineering")))
    sales = ScopingFilter((scoping_clause("department", "EQUALS", "Sales"),))
    filters = ScopingFilters((ny_eng, sales))
    assert filters.in_scope(EntraUser("1", {"state": "New York", "department": "Engineering"}))
    assert not filters.in_scope(EntraUser("2", {"state": "New York", "department": "Finance"}))
    assert filters.in_scope(EntraUser("3", {"state": "Ohio", "department": "Sales"}))
    assert ScopingFilters().in_scope(EntraUser("4", {}))  # no filters: everyone
    assert filters.attributes == ("department", "state")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("department", "LIKE", "x"), "unknown operator 'LIKE'"),
        (("department", "EQUALS", None), "EQUALS needs a value"),
        (("department", "EQUALS", 3), "needs a string value"),
        (("employeeId", "Greater_Than", "10"), "needs an integer value"),
        (("department", "IS NULL", "x"), "IS NULL takes no value"),
        (("upn", "REGEX MATCH", "("), "invalid regular expression"),
        (("bad name", "EQUALS", "x"), "must be a Graph user property name"),
    ],
)
def test_invalid_clauses_say_why(args, message):
    with pytest.raises(ValueError, match=message):
        scoping_clause(*args)


def test_out_of_scope_reason_applies_filters_after_assignment():
    filters = ScopingFilters((ScopingFilter((scoping_clause("department", "EQUALS", "Sales"),)),))
    sales = EntraUserState("u1", EntraUser("u1", {"department": "Sales", "accountEnabled": True}), frozenset({"r1"}))
    finance = EntraUserState("u2", EntraUser("u2", {"department": "Finance", "accountEnabled": True}), frozenset({"r1"}))
    unassigned = EntraUserState("u3", EntraUser("u3", {"department": "Sales"}), frozenset())
    assert out_of_scope_reason(sales, filters) is None
    assert out_of_scope_reason(finance, filters) == "outside every scoping filter"
    assert out_of_scope_reason(finance) is None  # no filters: the existing rule
    assert out_of_scope_reason(unassigned, filters) == "not assigned to the Salesforce app with a role"


def test_scoping_attributes_are_selected_from_graph():
    from dataclasses import replace

    filters = ScopingFilters((ScopingFilter((scoping_clause("department", "EQUALS", "Sales"),)),))
    assert "department" in replace(default_salesforce_mapping(), scoping=filters).source_attributes


# ---- matching precedence -------------------------------------------------------------------------

FIELDS = ("Username", "FederationIdentifier", "Email")
ANN = SalesforceUser("005A", {"Username": "ann@contoso.com", "FederationIdentifier": "ann-fid", "Email": "ann@contoso.com"})
BOB = SalesforceUser("005B", {"Username": "bob@other.org", "FederationIdentifier": "ANN@CONTOSO.COM", "Email": "bob@x.com"})
TWINS = (SalesforceUser("005C", {"Username": "c1@x", "Email": "shared@x.com"}),
         SalesforceUser("005D", {"Username": "c2@x", "Email": "shared@x.com"}))


def match(values, link=None, found=(ANN, BOB, *TWINS)):
    return match_by_precedence(link, tuple(zip(FIELDS, values)), {u.id: u for u in found}, index_for_matching(found, FIELDS))


def test_first_matching_attribute_by_priority_wins():
    assert match(("ANN@contoso.com", "ANN@CONTOSO.COM", None)) is ANN  # Username first, case-insensitive
    assert match(("nobody@contoso.com", "ann@contoso.com", None)) is BOB  # then FederationIdentifier
    assert match(("nobody@contoso.com", None, "bob@x.com")) is BOB  # then Email
    assert match(("nobody@contoso.com", "none", "none@x.com")) is None


def test_the_link_is_sticky_over_every_matching_value():
    link = UserLink("e1", "005B", "h")
    assert match(("ann@contoso.com", None, None), link=link) is BOB
    gone = UserLink("e1", "005Z", "h")  # linked user no longer found: fall back to matching
    assert match(("ann@contoso.com", None, None), link=gone) is ANN


def test_a_value_shared_by_several_salesforce_users_is_an_error_not_a_guess():
    with pytest.raises(PermanentError) as err:
        match((None, None, "shared@x.com"))
    assert err.value.code == "AmbiguousMatch" and err.value.fields == ("Email",)
    assert match(("c1@x", None, "shared@x.com")) is TWINS[0]  # a higher priority match decides first


def test_out_of_scope_users_match_only_through_their_link():
    assert match_by_precedence(None, (), {ANN.id: ANN}, index_for_matching((ANN,), FIELDS)) is None
