"""Salesforce's User rules checked before the call, and Entra language tags as picklist values."""
from __future__ import annotations

import pytest

from shared.core.errors import PermanentError, TransientError
from shared.core.salesforce_rules import (
    REQUIRED_ON_CREATE,
    check_user_record,
    is_parked,
    normalize_picklists,
    picklist_value,
    fields_with_invalid_text,
    salesforce_length,
)

VALID = {
    "Username": "adele@contoso.com", "LastName": "Vance", "Email": "adele@contoso.com", "Alias": "adele",
    "TimeZoneSidKey": "America/Los_Angeles", "LocaleSidKey": "en_US", "EmailEncodingKey": "ISO-8859-1",
    "LanguageLocaleKey": "en_US", "ProfileId": "00e000000000001AAA", "IsActive": True,
}
DEFAULTS = {"LocaleSidKey": "en_US", "LanguageLocaleKey": "en_US", "TimeZoneSidKey": "America/Los_Angeles"}


@pytest.mark.parametrize(("entra", "locale"), [
    ("en-US", "en_US"), ("de-DE", "de_DE"), ("pt-BR", "pt_BR"), ("zh-TW", "zh_TW"), ("de-de", "de_DE"),
    ("he-IL", "iw_IL"), ("en_GB", "en_GB"),
])
def test_locale_keeps_language_and_country(entra: str, locale: str):
    assert picklist_value("LocaleSidKey", entra) == locale


@pytest.mark.parametrize(("entra", "language"), [
    ("de-DE", "de"), ("en-US", "en_US"), ("pt-BR", "pt_BR"), ("zh-TW", "zh_TW"), ("es-MX", "es_MX"),
    ("es-ES", "es"), ("fr-CA", "fr"), ("nb-NO", "no"), ("ja", "ja"), ("de", "de"),
])
def test_language_takes_the_most_specific_salesforce_code(entra: str, language: str):
    assert picklist_value("LanguageLocaleKey", entra) == language


def test_values_already_valid_or_in_other_fields_are_untouched():
    assert picklist_value("TimeZoneSidKey", "Europe/Berlin") == "Europe/Berlin"
    assert picklist_value("Title", "de-DE") == "de-DE"
    assert picklist_value("LanguageLocaleKey", "en_GB") == "en_GB"


def test_normalize_converts_and_falls_back_to_the_mapping_default():
    record = {**VALID, "LocaleSidKey": "de-DE", "LanguageLocaleKey": "xx-YY", "TimeZoneSidKey": "Mars/Olympus"}
    out, fell_back = normalize_picklists(record, DEFAULTS)
    assert (out["LocaleSidKey"], out["LanguageLocaleKey"], out["TimeZoneSidKey"]) == ("de_DE", "en_US", "America/Los_Angeles")
    assert set(fell_back) == {"LanguageLocaleKey", "TimeZoneSidKey"}  # converted LocaleSidKey did not fall back
    assert record["LocaleSidKey"] == "de-DE"  # the input is not changed


def test_normalize_keeps_an_invalid_value_without_a_valid_default_for_the_check():
    out, fell_back = normalize_picklists({"EmailEncodingKey": "EBCDIC"}, {"EmailEncodingKey": "also-bad"})
    assert out == {"EmailEncodingKey": "EBCDIC"} and fell_back == ()
    error = check_user_record({**VALID, **out}, creating=True)
    assert error is not None and error.code == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert error.fields == ("EmailEncodingKey",) and "EmailEncodingKey" in error.message and "EBCDIC" in error.message


def test_a_complete_record_passes():
    assert check_user_record(VALID, creating=True) is None
    assert check_user_record({"Id": "005000000000001AAA", "Title": "CTO"}, creating=False) is None


def test_create_names_every_missing_required_field():
    record = {k: v for k, v in VALID.items() if k not in ("Email", "Alias")} | {"LastName": ""}
    error = check_user_record(record, creating=True)
    assert isinstance(error, PermanentError) and error.code == "REQUIRED_FIELD_MISSING"
    assert error.fields == ("LastName", "Email", "Alias")
    assert "LastName, Email, Alias" in error.message


@pytest.mark.parametrize("field", REQUIRED_ON_CREATE)
def test_each_of_the_nine_fields_is_required_on_create(field: str):
    error = check_user_record({k: v for k, v in VALID.items() if k != field}, creating=True)
    assert error is not None and error.fields == (field,)


def test_update_only_fails_for_a_required_field_it_clears():
    assert check_user_record({"Id": "005000000000001AAA", "FirstName": None}, creating=False) is None
    error = check_user_record({"Id": "005000000000001AAA", "Email": None}, creating=False)
    assert error is not None and error.code == "REQUIRED_FIELD_MISSING" and error.fields == ("Email",)


def test_too_long_names_the_field_and_its_limit_not_the_value():
    error = check_user_record({**VALID, "Alias": "adelevance"}, creating=True)
    assert error is not None and error.code == "STRING_TOO_LONG" and error.fields == ("Alias",)
    assert "Alias" in error.message and "8" in error.message and "adelevance" not in error.message
    assert check_user_record({**VALID, "Alias": "adelevan"}, creating=True) is None  # exactly the limit


def test_lengths_count_utf16_units_as_salesforce_does():
    assert salesforce_length("Zoë") == 3 and salesforce_length("Ze\u0301") == 3  # combining marks count once each
    assert salesforce_length("\U0001F600") == 2  # outside the BMP: a surrogate pair
    assert check_user_record({**VALID, "FirstName": "\U0001F600" * 20}, creating=True) is None  # 40 units
    error = check_user_record({**VALID, "FirstName": "\U0001F600" * 21}, creating=True)
    assert error is not None and error.code == "STRING_TOO_LONG" and error.fields == ("FirstName",)


@pytest.mark.parametrize(("field", "value", "code"), [
    ("Username", "just-a-name", "FIELD_INTEGRITY_EXCEPTION"),
    ("Username", "first last@contoso.com", "FIELD_INTEGRITY_EXCEPTION"),
    ("Email", "not an email", "INVALID_EMAIL_ADDRESS"),
    ("Email", "a@b", "INVALID_EMAIL_ADDRESS"),
])
def test_username_and_email_must_be_email_addresses(field: str, value: str, code: str):
    error = check_user_record({**VALID, field: value}, creating=True)
    assert error is not None and error.code == code and error.fields == (field,) and value not in error.message


@pytest.mark.parametrize("value", [42, 4.2, True, {"first": "x"}, ["x"]])
def test_a_text_field_with_a_value_that_is_not_text_is_named_not_sent(value):
    error = check_user_record({**VALID, "LastName": value}, creating=True)
    assert error is not None and error.code == "INVALID_TYPE_ON_FIELD_IN_RECORD" and error.fields == ("LastName",)
    assert type(value).__name__ in error.message


def test_text_with_a_lone_surrogate_is_named_and_anything_else_passes():
    record = {**VALID, "FirstName": "Zoë \U0001F600", "LastName": "Bad\udc00Half", "Username": "lone\ud800@x.com"}
    assert sorted(fields_with_invalid_text(record)) == ["LastName", "Username"]
    assert fields_with_invalid_text(VALID) == []


def test_invalid_language_is_named_with_its_value():
    error = check_user_record({"Id": "005000000000001AAA", "LanguageLocaleKey": "de_DE"}, creating=False)
    assert error is not None and error.code == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert error.fields == ("LanguageLocaleKey",) and "de_DE" in error.message


def test_only_licence_exhaustion_is_parked():
    assert is_parked(PermanentError("LICENSE_LIMIT_EXCEEDED", "License Limit Exceeded", system="salesforce"))
    assert not is_parked(PermanentError("DUPLICATE_USERNAME", "taken", system="salesforce"))
    assert not is_parked(TransientError("UNABLE_TO_LOCK_ROW", "locked", system="salesforce"))
