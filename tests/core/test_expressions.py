from datetime import datetime, timezone

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


# ---- the rest of the connector's functions -------------------------------------------------------

NOW = datetime(2021, 8, 25, 17, 41, 18, tzinfo=timezone.utc)


def at(text, now=NOW, **attributes):
    return parse_expression(text).evaluate(MappingInput(EntraUser("e1", attributes), (), now=now), target="Field")


def test_bit_and_with_vba_hex_literals():
    assert ev("BitAnd(&HF, &HF7)") == 7
    assert ev("BitAnd([flags], 4)", flags=6) == 4


def test_cbool():
    assert ev("CBool([a] = [b])", a="x", b="x") is True
    assert ev("CBool([a] = [b])", a="x", b="y") is False
    assert ev("CBool([n])", n=2) is True and ev("CBool([n])", n="0") is False and ev("CBool([n])") is False
    assert ev('CBool("True")') is True
    with pytest.raises(PermanentError) as err:
        ev("CBool([n])", n="maybe")
    assert err.value.code == "ExpressionValueInvalid"


def test_cdate_returns_utc_in_the_connectors_format():
    assert ev("CDate([StatusHireDate])", StatusHireDate="2020-03-16-07:00") == "3/16/2020 7:00:00 AM"
    assert ev('CDate("2021-06-30+08:00")') == "6/29/2021 4:00:00 PM"
    assert ev('CDate("2009-06-15T01:45:30-07:00")') == "6/15/2009 8:45:30 AM"
    assert ev("CDate([missing])") is None
    with pytest.raises(PermanentError, match="cannot read the value as a date"):
        ev("CDate([d])", d="not a date")


def test_convert_to_base64_and_utf8_hex():
    assert ev('ConvertToBase64("Hello world!")') == "SABlAGwAbABvACAAdwBvAHIAbABkACEA"
    assert ev('ConvertToUTF8Hex("Hello world!")') == "48656C6C6F20776F726C6421"
    assert ev("ConvertToUTF8Hex([n])", n="é") == "C3A9"


def test_count_item_and_remove_duplicates_on_multi_valued_attributes():
    proxies = ["SMTP:a@x.com", "smtp:b@x.com", "SMTP:a@x.com"]
    assert ev("Count([proxyAddresses])", proxyAddresses=proxies) == 3
    assert ev("Count([proxyAddresses])") == 0 and ev("Count([mail])", mail="a@x.com") == 1
    assert ev("Item([proxyAddresses], 1)", proxyAddresses=proxies) == "SMTP:a@x.com"
    assert ev("Item([proxyAddresses], 0)", proxyAddresses=proxies) is None  # 1-based, as the reference says
    assert ev("Item([proxyAddresses], 9)", proxyAddresses=proxies) is None
    assert ev("RemoveDuplicates([proxyAddresses])", proxyAddresses=proxies) == ["SMTP:a@x.com", "smtp:b@x.com"]
    assert ev('Join(";", RemoveDuplicates([proxyAddresses]))', proxyAddresses=proxies) == "SMTP:a@x.com;smtp:b@x.com"


def test_cstr_and_is_string():
    assert ev("CStr([n])", n=42) == "42" and ev("CStr([b])", b=True) == "True" and ev("CStr([x])") is None
    assert ev("IsString([s])", s="x") is True and ev("IsString([n])", n=1) is False


def test_date_add_each_interval():
    hire = {"StatusHireDate": "2012-03-16-07:00"}
    assert ev('DateAdd("d", 7, CDate([StatusHireDate]))', **hire) == "3/23/2012 7:00:00 AM"
    assert ev('DateAdd("d", -10, CDate([StatusHireDate]))', **hire) == "3/6/2012 7:00:00 AM"
    assert ev('DateAdd("ww", 2, CDate([StatusHireDate]))', **hire) == "3/30/2012 7:00:00 AM"
    assert ev('DateAdd("m", 10, CDate([StatusHireDate]))', **hire) == "1/16/2013 7:00:00 AM"
    assert ev('DateAdd("yyyy", 2, CDate([StatusHireDate]))', **hire) == "3/16/2014 7:00:00 AM"
    assert ev('DateAdd("h", 1, CDate([StatusHireDate]))', **hire) == "3/16/2012 8:00:00 AM"
    assert ev('DateAdd("n", 90, CDate([StatusHireDate]))', **hire) == "3/16/2012 8:30:00 AM"
    assert ev('DateAdd("s", 30, CDate([StatusHireDate]))', **hire) == "3/16/2012 7:00:30 AM"
    assert ev('DateAdd("d", 1, CDate([missing]))') is None


def test_date_diff_matches_the_references_table():
    diff = lambda interval, a, b: ev(f'DateDiff("{interval}", CDate([a]), CDate([b]))', a=a, b=b)  # noqa: E731
    assert diff("d", "2021-08-18+08:00", "2021-08-31+08:00") == 13
    assert diff("d", "8/25/2021 5:41:18 PM", "2012-03-16-07:00") == -3449
    assert diff("ww", "8/25/2021 5:41:18 PM", "2012-03-16-07:00") == -493
    assert diff("m", "8/25/2021 5:41:18 PM", "2012-03-16-07:00") == -113
    assert diff("yyyy", "8/25/2021 5:41:18 PM", "2012-03-16-07:00") == -9
    assert diff("d", "2021-08-31+08:00", "2021-08-31+08:00") == 0
    assert diff("h", "2021-08-24", "2021-08-25") == 24
    assert diff("n", "2021-08-24", "2021-08-25") == 1440
    assert diff("s", "2021-08-24", "2021-08-25") == 86400


def test_now_in_a_comparison_as_the_reference_uses_it():
    expr = ('Switch([Active], , "1", IIF(DateDiff("d", Now(), CDate([StatusHireDate])) > 5, "False", "True"), '
            '"0", "False")')
    assert at(expr, Active="1", StatusHireDate="2021-08-28") == "True"  # hired in 2 days
    assert at(expr, Active="1", StatusHireDate="2021-09-30") == "False"
    assert at("Now()") == "8/25/2021 5:41:18 PM"
    before = datetime.now(timezone.utc).replace(microsecond=0)
    assert at('DateDiff("s", Now(), CDate([t]))', now=None, t=before.isoformat()) <= 0  # the clock, without one


def test_date_from_num_and_num_from_date_are_active_directory_dates():
    assert ev("DateFromNum(129699324000000000)") == "1/1/2012 11:00:00 PM"
    assert ev("DateFromNum([lastLogonTimestamp])", lastLogonTimestamp="129699324000000000") == "1/1/2012 11:00:00 PM"
    assert ev('NumFromDate("2012-01-01T23:00:00Z")') == 129699324000000000
    expr = 'NumFromDate(Join("", FormatDateTime([ContractEndDate], , "yyyy-MM-ddzzz", "yyyy-MM-dd"), " 23:59:59-08:00"))'
    assert ev(expr, ContractEndDate="2020-12-31-08:00") == ev('NumFromDate("2021-01-01T07:59:59Z")')


def test_format_date_time_with_dotnet_formats():
    assert ev('FormatDateTime([extensionAttribute1], , "yyyyMMddHHmmss.fZ", "yyyy-MM-dd")',
              extensionAttribute1="20150123105347.1Z") == "2015-01-23"
    assert ev('FormatDateTime([endDate], , "M/d/yyyy hh:mm:ss tt", "yyyy-MM-ddTHH:mm:ss")',
              endDate="1/5/2021 05:41:18 PM") == "2021-01-05T17:41:18"
    assert ev('FormatDateTime([d], , "yyyy-MM-ddzzz", "dddd d MMMM yy \'at\' h:mm tt zzz")',
              d="2020-12-31-08:00") == "Thursday 31 December 20 at 12:00 AM -08:00"
    assert ev('FormatDateTime(CDate([d]), , "M/d/yyyy h:mm:ss tt", "yyyy-MM-ddTHH:mm:ssK")',
              d="2021-06-30+08:00") == "2021-06-29T16:00:00Z"
    assert ev('FormatDateTime([d], , "yyyy-MM-dd", "yyyy")') is None
    with pytest.raises(PermanentError, match="does not have the input format"):
        ev('FormatDateTime([d], , "yyyy-MM-dd", "yyyy")', d="31.12.2020")


def test_ignore_flow_if_null_or_empty_leaves_the_field_out_even_with_a_default():
    from shared.core.mapping_config import parse_mapping
    mapping = parse_mapping('[fields.Username]\ntype = "Direct"\nsource = "userPrincipalName"\nmatching_priority = 1\n'
                            '[fields.Title]\ntype = "Expression"\ndefault = "Staff"\n'
                            'expression = \'IgnoreFlowIfNullOrEmpty(Switch([prefix], "", "3443", "Dr.", "3444", "Prof."))\'\n')
    out = lambda **a: mapping.apply(MappingInput(EntraUser("e1", {"userPrincipalName": "a@x.com", **a}), ()))  # noqa: E731
    assert out(prefix="3443") == {"Username": "a@x.com", "Title": "Dr."}
    assert out(prefix="9999") == {"Username": "a@x.com"}  # not sent: no default, no empty value
    assert out() == {"Username": "a@x.com"}


def test_instr():
    assert ev('InStr("The quick brown fox","quick")') == 5
    assert ev('InStr("repEated","e",3,vbBinaryCompare)') == 7
    assert ev('InStr("repEated","e",3,vbTextCompare)') == 4
    assert ev('InStr([mail], "@")', mail="ann@x.com") == 4 and ev('InStr([mail], "#")', mail="a") == 0
    assert ev('InStr([mail], "@")') is None


def test_pcase():
    assert ev("PCase([firstName])", firstName="PABLO GONSALVES (SECOND)") == "Pablo Gonsalves (Second)"
    assert ev("PCase([lastName],\" '-\")", lastName="PINTO-DE'SILVA") == "Pinto-De'Silva"
    assert ev('PCase(Join(" ",[firstName],[lastName]))', firstName="GREGORY", lastName="JAMES") == "Gregory James"
    assert ev("PCase([n])", n="élodie o'connor-núñez") == "Élodie O'Connor-Núñez"


def test_redact_passes_the_value_through():
    assert ev("Redact([userPrincipalName])", userPrincipalName="a@x.com") == "a@x.com"


@pytest.mark.parametrize("text, message, column", [
    ("Guid()", "Guid is not supported: it gives a new value on every evaluation", 1),
    ("RandomString(6,3,0,0,3)", "RandomString is not supported", 1),
    ("AppRoleAssignmentsComplex([appRoleAssignments])", "AppRoleAssignmentsComplex is not supported", 1),
    ('DateAdd("q", 1, Now())', "DateAdd interval must be one of yyyy, m, d, ww, h, n, s, got 'q'", 9),
    ('FormatDateTime([d], , "yyyy-MM-dd", )', "FormatDateTime needs inputFormat and outputFormat", 37),
    ('InStr([a], "b", 1, vbSortOfCompare)', "unknown name 'vbSortOfCompare'", 20),
    ('InStr([a], "b", 1, "binary")', "InStr compareType must be vbBinaryCompare or vbTextCompare", 20),
    ('Append(IgnoreFlowIfNullOrEmpty([a]), "x")', "IgnoreFlowIfNullOrEmpty must be the whole expression", 8),
    ("Now(1)", "Now takes 0 arguments, got 1", 1),
])
def test_the_new_functions_report_bad_use_at_its_line_and_column(text, message, column):
    with pytest.raises(ExpressionError) as err:
        parse_expression(text)
    assert message in err.value.message and (err.value.line, err.value.column) == (1, column)
