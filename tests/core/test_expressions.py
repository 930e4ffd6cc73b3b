import pytest

from shared.core.errors import PermanentError
from shared.core.expressions import ExpressionError, parse_expression
from shared.core.mapping import MappingInput
from shared.core.models import EntraUser


def ev(text, roles=(), is_unique=None, target="Field", **attributes):
    return parse_expression(text).evaluate(MappingInput(EntraUser("e1", attributes), tuple(roles)),
                                           target=target, is_unique=is_unique)


# ---- each function, with the Microsoft reference's examples where it gives one ------------------

def test_append():
    assert ev('Append([userPrincipalName], ".test")', userPrincipalName="John.Doe@contoso.com") == "John.Doe@contoso.com.test"
    assert ev('Append([userPrincipalName], ".test")') is None  # no source, nothing to send


def test_coalesce():
    assert ev("Coalesce([mail],[userPrincipalName])", mail=None, userPrincipalName="John.Doe@contoso.com") == "John.Doe@contoso.com"
    assert ev('Coalesce([mail], [otherMail], "none")', mail="a@b.c") == "a@b.c"
    assert ev('Coalesce([mail], [otherMail], "none")', mail="") == "none"
    assert ev("Coalesce([mail])") is None


def test_iif_with_comparisons():
    expr = 'IIF([country]="USA",[country],[department])'
    assert ev(expr, country="USA", department="Sales") == "USA"
    assert ev(expr, country="DE", department="Sales") == "Sales"
    assert ev(expr, department="Sales") == "Sales"  # a null attribute fails the check, as documented
    assert ev('IIF([country]="USA",IIF([state]="CA","True","False"),"False")', country="USA", state="CA") == "True"
    assert ev('IIF([employeeId] >= 1000, "big", "small")', employeeId="999") == "small"  # numbers compare as numbers
    assert ev('IIF([employeeId] <> 5, "y", "n")', employeeId=5) == "n"
    assert ev('IIF([accountEnabled], "on", "off")', accountEnabled=True) == "on"


def test_is_present_is_null_or_empty_is_null():
    assert ev("IsPresent([mail])", mail="x") is True
    assert ev("IsPresent([mail])", mail="") is False
    assert ev("IsNullOrEmpty([mail])", mail="") is True
    assert ev("IsNullOrEmpty([mail])", mail="x") is False
    assert ev("IsNull([mail])") is True and ev("IsNull([mail])", mail="") is False


def test_join():
    assert ev('Join(", ", "", [surname], [givenName])', givenName="John", surname="Doe") == "Doe, John"
    assert ev('Join(";", [otherMails], [mail])', otherMails=["a@x", "b@x"], mail="c@x") == "a@x;b@x;c@x"
    assert ev('Join(".", [givenName], [surname])') is None


def test_left():
    assert ev('Left("John Doe", 3)') == "Joh"
    assert ev('Left("John", 0)') == "" and ev('Left("John", -1)') == "John" and ev('Left("Jo", 5)') == "Jo"
    assert ev("Left([missing], 3)") == ""


def test_mid():
    assert ev("Append(Mid([givenName], 1, 3), Mid([surname], 1, 5))", givenName="John", surname="Doe") == "JohDoe"
    assert ev("Mid([userPrincipalName], 1, 8)", userPrincipalName="O'Brien.Long@x") == "O'Brien."
    assert ev('Mid("abcdef", 3, 2)') == "cd" and ev('Mid("abc", 2, 10)') == "bc"
    assert ev("Mid([missing], 1, 8)") is None


def test_normalize_diacritics():
    assert ev("NormalizeDiacritics([givenName])", givenName="Zoë") == "Zoe"
    assert ev('NormalizeDiacritics("Łukasz Żółkiewski")') == "Lukasz Zolkiewski"
    assert ev('NormalizeDiacritics("Æsir Øre Straße Ñúñez")') == "AEsir OEre Strasse Nunez"


def test_not():
    assert ev("Not([IsSoftDeleted])", IsSoftDeleted=True) is False
    assert ev("Not([IsSoftDeleted])", IsSoftDeleted="False") is True
    assert ev("Not([IsSoftDeleted])") is True


def test_replace_old_value_and_replacement_value():
    assert ev('Replace([BusinessTitle],"Product Developer", , , "Software Engineer", , )',
              BusinessTitle="Product Developer") == "Software Engineer"
    assert ev('Replace([mail], "@contoso.com", , ,"", ,)', mail="john.doe@contoso.com") == "john.doe"
    assert ev('Replace([preferredLanguage], "-", , , "_", , )', preferredLanguage="de-DE") == "de_DE"
    assert ev('Replace([preferredLanguage], "-", , , "_", , )') is None


def test_replace_old_value_and_template():
    assert ev('Replace([UserID],"<username>", , , , , "<username>@contoso.com")', UserID="jsmith") == "jsmith@contoso.com"


def test_replace_regex_and_replacement_value():
    phone = r'Replace([telephoneNumber], , "\\+(?<isdCode>\\d* )(?<phoneNumber>\\d{10})", , "${phoneNumber}", , )'
    assert ev(phone, telephoneNumber="+91 9998887777") == "9998887777"
    assert ev(r'Replace([mobile], , "[()\\s-]+", , "", , )', mobile="+1 (999) 888-7777") == "+19998887777"
    assert ev('Replace([mailNickname], , "[a-zA-Z_]*", , "", , )', mailNickname="john_doe72") == "72"


def test_replace_regex_group_and_replacement_value():
    assert ev(r'Replace([AddressLineData], ,"(?<streetNumber>^\\d*)","streetNumber", "888", , )',
              AddressLineData="545 Tremont Street") == "888 Tremont Street"
    assert ev('Replace([userPrincipalName], , "(?<Suffix>@(.)*)", "Suffix", "", , )',
              userPrincipalName="jsmith@contoso.com") == "jsmith"


def test_replace_regex_group_and_replacement_attribute():
    expr = r'Replace([telephoneNumber], , "\\+(?<isdCode>\\d* )(?<phoneNumber>\\d{10})", "phoneNumber" , , [mobile], )'
    assert ev(expr, telephoneNumber="", mobile="+91 8887779999") == "8887779999"
    assert ev(expr, telephoneNumber="+1 555", mobile="+91 8887779999") == "+1 555"


def test_select_unique_value_asks_the_callback_in_order():
    expr = ('SelectUniqueValue(Join("@", NormalizeDiacritics(StripSpaces(Join(".", [givenName], [surname]))), "contoso.com"), '
            'Join("@", NormalizeDiacritics(StripSpaces(Join(".", Mid([givenName], 1, 1), [surname]))), "contoso.com"), '
            'Join("@", NormalizeDiacritics(StripSpaces(Join(".", Mid([givenName], 1, 2), [surname]))), "contoso.com"))')
    taken = {"John.Smith@contoso.com"}
    asked = []

    def is_unique(field, value):
        asked.append((field, value))
        return value not in taken

    assert ev(expr, givenName="John", surname="Smith", is_unique=is_unique, target="Alias") == "J.Smith@contoso.com"
    assert asked == [("Alias", "John.Smith@contoso.com"), ("Alias", "J.Smith@contoso.com")]
    assert ev(expr, givenName="John", surname="Smith") == "John.Smith@contoso.com"  # no callback: the first
    taken |= {"J.Smith@contoso.com", "Jo.Smith@contoso.com"}
    with pytest.raises(PermanentError) as err:
        ev(expr, givenName="John", surname="Smith", is_unique=is_unique, target="Alias")
    assert err.value.code == "NoUniqueValue" and err.value.fields == ("Alias",)


def test_single_app_role_assignment():
    assert ev("SingleAppRoleAssignment([appRoleAssignments])", roles=("Sales User",)) == "Sales User"
    assert ev("SingleAppRoleAssignment([appRoleAssignments])") is None
    assert parse_expression("SingleAppRoleAssignment([appRoleAssignments])").attributes == ()


def test_split():
    assert ev('Split([extensionAttribute5], ",")', extensionAttribute5="PermissionSetOne,PermissionSetTwo") == [
        "PermissionSetOne", "PermissionSetTwo"]
    assert ev('Split([extensionAttribute5], ",")') is None


def test_strip_spaces():
    assert ev("StripSpaces([surname])", surname="van der Berg") == "vanderBerg"


def test_switch():
    tz = 'Switch([state], "Australia/Sydney", "NSW", "Australia/Sydney","QLD", "Australia/Brisbane", "SA", "Australia/Adelaide")'
    assert ev(tz, state="QLD") == "Australia/Brisbane"
    assert ev(tz, state="WA") == "Australia/Sydney"
    assert ev('Switch([statusFlag], "Default Value", "true", "1", "", "0")') == "0"  # empty key catches null
    assert ev('Switch([Active], , "1", "True", "0", "False")', Active="7") is None


def test_to_lower_and_to_upper():
    assert ev('ToLower(Join("@", NormalizeDiacritics(StripSpaces(Join(".",  [PreferredFirstName], [PreferredLastName]))), "contoso.com"))',
              PreferredFirstName="John", PreferredLastName="Smith") == "john.smith@contoso.com"
    assert ev('ToUpper([c], "en-US")', c="de") == "DE"
    assert ev("ToLower([missing])") is None


def test_word():
    assert ev('Word("The quick brown fox",3," ")') == "brown"
    assert ev('Word("This,string!has&many separators",3,",!&#")') == "has"
    assert ev('Word("one two", 5, " ")') == "" and ev('Word("one", 0, " ")') == "" and ev('Word([x], 1, " ")') == ""


# ---- syntax ------------------------------------------------------------------------------------

def test_string_escapes_booleans_and_numbers():
    assert ev(r'Append("Company name: \"Contoso\"", "")') == 'Company name: "Contoso"'
    assert ev('Append("say ""hi""", "")') == 'say "hi"'
    assert ev(r'Append("back\\slash", "")') == "back\\slash"
    assert ev("Not(False)") is True and ev("Coalesce([x], -3)") == -3


def test_attributes_and_functions_are_collected():
    expr = parse_expression('Coalesce(Mid([givenName], 1, 1), [ surname ], "x")')
    assert expr.attributes == ("givenName", "surname")
    assert expr.functions == {"Coalesce", "Mid"}


@pytest.mark.parametrize(
    ("text", "line", "column", "fragment"),
    [
        ("toLower([mail])", 1, 1, "unknown function toLower (names are case-sensitive: ToLower)"),
        ("Append([mail])", 1, 1, "Append takes 2 arguments, got 1"),
        ('Append([mail], "x"', 1, 19, "expected ',' or ')'"),
        ('Append([mail], "x)', 1, 16, "string is not closed"),
        ("Append(\n  [mail],\n  Frob([x]))", 3, 3, "unknown function Frob"),
        ("Append([mail], x)", 1, 16, "unknown name 'x'"),
        ("[mail] [mail]", 1, 8, "after the end of the expression"),
        ("", 1, 1, "expression is empty"),
        ("Append([ma il], \"\")", 1, 8, "invalid attribute name"),
        ('Replace([x], , "(", , "", , )', 1, 16, "invalid regular expression"),
        ('Replace([x], , "(?<a>.)", "b", "", , )', 1, 27, "regexGroupName 'b' is not a group"),
        ('Replace([x], "-", , , , , )', 1, 1, "Replace needs oldValue with replacementValue or template"),
        ('Switch([x], "d", "k")', 1, 1, "Switch takes at least 4 arguments"),
        ('Switch([x], "d", "k", "v", "k2")', 1, 1, "an even number of arguments"),
        ("SingleAppRoleAssignment([roles])", 1, 1, "takes exactly [appRoleAssignments]"),
        ('ToLower(SelectUniqueValue([a], [b]))', 1, 9, "SelectUniqueValue must be the whole expression"),
        ("Mid(, 1, 2)", 1, 1, "Mid needs its first argument"),
        ("Append([a], @)", 1, 13, "unexpected character '@'"),
    ],
)
def test_parse_errors_point_at_line_and_column(text, line, column, fragment):
    with pytest.raises(ExpressionError) as err:
        parse_expression(text)
    assert (err.value.line, err.value.column) == (line, column), str(err.value)
    assert fragment in err.value.message


def test_a_multi_valued_attribute_where_one_value_is_needed_is_a_permanent_error():
    with pytest.raises(PermanentError) as err:
        ev("ToLower([otherMails])", otherMails=["a", "b"])
    assert err.value.code == "ExpressionValueInvalid"


def test_an_object_valued_attribute_is_an_error_naming_the_attribute_and_the_field():
    with pytest.raises(PermanentError) as err:
        ev("ToLower([employeeOrgData])", target="Division", employeeOrgData={"division": "Sales"})
    assert err.value.code == "ExpressionValueInvalid" and err.value.fields == ("Division",)
    assert "Division: [employeeOrgData] is an object (dict)" in err.value.message
    assert "[employeeOrgData.<property>]" in err.value.message
