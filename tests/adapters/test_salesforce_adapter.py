"""SalesforceRestOrg: real simple-salesforce over TLS against the Salesforce emulator."""
from __future__ import annotations

import logging
from functools import partial

import pytest

from emulators.salesforce import EmulatedOrg, EmulatorHandle, UsernameRegistry
from shared.adapters.salesforce import SalesforceRestOrg
from shared.adapters.salesforce_client import client_credentials_client, dev_token_client
from shared.core.errors import ConfigurationError, PermanentError, SessionExpired, TransientError

from .salesforce_records import assert_counts_match, record

FIELDS = ["Username", "Email", "IsActive", "Title"]


async def test_profile_ids_are_queried_once_and_cached(adapter: SalesforceRestOrg, org: EmulatedOrg) -> None:
    first = await adapter.profile_ids()
    second = await adapter.profile_ids()

    assert first == second
    assert first["Standard User"] == org.profile_id("Standard User")
    assert org.calls.snapshot() == {"total": 1, "writes": 0, "by_kind": {"query": 1}}
    assert_counts_match(adapter, org)


async def test_find_users_treats_a_quote_in_a_username_as_data(adapter: SalesforceRestOrg, org: EmulatedOrg) -> None:
    obrien = org.create_user(record(org, "o'brien@contoso.com", Title="Engineer"))
    other = org.create_user(record(org, "other@contoso.com"))
    org.create_user(record(org, "ignored@contoso.com"))

    found = await adapter.find_users(FIELDS, ids=[other], usernames=["O'Brien@Contoso.com", "x' OR Username != '"])

    by_id = {u.id: u for u in found}
    assert set(by_id) == {obrien, other}
    assert by_id[obrien].fields == {
        "Id": obrien, "Username": "o'brien@contoso.com", "Email": "o'brien@contoso.com", "IsActive": True, "Title": "Engineer"
    }
    assert org.calls.by_kind["query"] == 1  # ids and usernames in one query (Id IN … OR Username IN …)
    assert_counts_match(adapter, org)


async def test_find_users_refuses_field_names_and_ids_that_are_not_salesforce_shaped(adapter: SalesforceRestOrg) -> None:
    with pytest.raises(ValueError):
        await adapter.find_users(["Username FROM User --"], usernames=["a@b.c"])
    with pytest.raises(PermanentError) as caught:
        await adapter.find_users(FIELDS, ids=["005') OR Id != ('"])
    assert caught.value.code == "MALFORMED_ID"


async def test_find_users_follows_next_records_url(adapter: SalesforceRestOrg, org: EmulatedOrg) -> None:
    org.query_page_size = 200
    names = [f"page{i}@contoso.com" for i in range(450)]
    for name in names:
        org.create_user(record(org, name))

    found = await adapter.find_users(["Username"], usernames=names)

    assert sorted(u.get("Username") for u in found) == sorted(names)
    assert org.calls.by_kind == {"query": 1, "query_more": 2}
    assert_counts_match(adapter, org)


async def test_find_users_chunks_long_in_lists_under_the_url_limit(adapter: SalesforceRestOrg, org: EmulatedOrg) -> None:
    names = [f"{'long.name.' * 6}{i:04d}@contoso.com" for i in range(600)]  # ~75 chars each: ~50 KB of SOQL
    for name in names[::50]:
        org.create_user(record(org, name, Alias=f"l{names.index(name)}"))

    found = await adapter.find_users(["Username"], usernames=names)

    assert sorted(u.get("Username") for u in found) == sorted(names[::50])
    assert org.calls.by_kind["query"] == 4  # ~50 KB in the fewest 16 KB URLs, and no 414
    assert_counts_match(adapter, org)


async def test_taken_values_asks_about_every_field_in_one_query(adapter: SalesforceRestOrg, org: EmulatedOrg) -> None:
    org.create_user(record(org, "ann.smith@contoso.com", Alias="asmith", CommunityNickname="Ann.Smith"))
    gone = org.create_user(record(org, "o'neil@contoso.com", Alias="o'neil", CommunityNickname="bob"))
    org.update_user(gone, {"IsActive": False})  # an inactive user still holds its nickname
    org.calls.reset()

    taken = await adapter.taken_values({"Alias": ["ASMITH", "asmith1", "o'neil", "bob"],
                                        "CommunityNickname": ["ann.smith", "Bob", "asmith"]})

    # As stored in Salesforce; "bob" is another user's nickname, not an alias, so the Alias "bob" is free.
    assert taken == {"Alias": {"asmith", "o'neil"}, "CommunityNickname": {"Ann.Smith", "bob"}}
    assert org.calls.by_kind == {"query": 1}
    assert await adapter.taken_values({"Alias": []}) == {}
    assert org.calls.by_kind == {"query": 1}  # nothing to ask, no call
    assert_counts_match(adapter, org)


async def test_taken_values_splits_long_lists_under_the_url_limit(adapter: SalesforceRestOrg, org: EmulatedOrg) -> None:
    nicknames = [f"{'nick.name.' * 3}{i:04d}" for i in range(1200)]  # ~40 KB of SOQL across two fields
    for i in range(0, 1200, 100):
        org.create_user(record(org, f"user{i}@contoso.com", Alias=f"a{i:04d}", CommunityNickname=nicknames[i]))
    org.calls.reset()

    taken = await adapter.taken_values({"Alias": [f"a{i:04d}" for i in range(0, 1200, 3)], "CommunityNickname": nicknames})

    assert taken == {"Alias": {f"a{i:04d}" for i in range(0, 1200, 300)}, "CommunityNickname": set(nicknames[::100])}
    assert 3 <= org.calls.by_kind["query"] <= 4  # the fewest 16 KB URLs, and no 414
    assert_counts_match(adapter, org)


async def test_create_250_users_in_two_calls_maps_each_failure_to_its_code(
    adapter: SalesforceRestOrg, org: EmulatedOrg, registry: UsernameRegistry
) -> None:
    registry.reserve("taken@elsewhere.com")
    org.create_user(record(org, "nick.owner@contoso.com", CommunityNickname="nick"))
    org.calls.reset()
    bad = {
        3: (record(org, "taken@elsewhere.com"), "DUPLICATE_USERNAME", ("Username",)),
        10: (record(org, "nick2@contoso.com", CommunityNickname="NICK"), "DUPLICATE_COMM_NICKNAME", ("CommunityNickname",)),
        20: (record(org, "nolast@contoso.com", LastName=None), "REQUIRED_FIELD_MISSING", ("LastName",)),
        30: (record(org, "alias@contoso.com", Alias="much-too-long"), "STRING_TOO_LONG", ("Alias",)),
        40: (record(org, "lang@contoso.com", LanguageLocaleKey="de_DE"), "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
             ("LanguageLocaleKey",)),
        50: (record(org, "not-an-email"), "FIELD_INTEGRITY_EXCEPTION", ("Username",)),
        60: (record(org, "mail@contoso.com", Email="mail"), "INVALID_EMAIL_ADDRESS", ("Email",)),
        70: (record(org, "profile@contoso.com", ProfileId="00e000000000000AAA"), "INVALID_CROSS_REFERENCE_KEY", ()),
        80: (record(org, "field@contoso.com", Shoe="42"), "INVALID_FIELD", ("Shoe",)),
        201: (record(org, "platform2@contoso.com", "Platform User"), "LICENSE_LIMIT_EXCEEDED", ()),
    }
    records = [record(org, f"bulk{i}@contoso.com", Alias=f"b{i}") for i in range(250)]
    records[200] = record(org, "platform1@contoso.com", "Platform User")  # takes the only Platform licence
    for index, (bad_record, _, _) in bad.items():
        records[index] = bad_record

    results = await adapter.create_users(records)

    assert len(results) == 250
    for index, result in enumerate(results):
        if index in bad:
            _, code, fields = bad[index]
            assert isinstance(result.error, PermanentError), index
            assert (result.error.code, result.error.fields, result.salesforce_id) == (code, fields, None)
        else:
            assert result.error is None and result.salesforce_id and org.get_user(result.salesforce_id), index
    assert org.calls.by_kind == {"composite_create": 2}
    assert (adapter.calls.writes, adapter.calls.total) == (2, 2)
    assert_counts_match(adapter, org)


async def test_update_and_an_email_change_that_stays_pending(adapter: SalesforceRestOrg, org: EmulatedOrg) -> None:
    user_id = org.create_user(record(org, "ada@contoso.com"))

    [result] = await adapter.update_users([{"Id": user_id, "Title": "Countess", "Email": "ada@new.example"}])

    assert (result.salesforce_id, result.error) == (user_id, None)
    [user] = await adapter.find_users(FIELDS, ids=[user_id])
    assert (user.get("Title"), user.get("Email")) == ("Countess", "ada@contoso.com")
    org.confirm_email(user_id)
    [user] = await adapter.find_users(FIELDS, ids=[user_id])
    assert user.get("Email") == "ada@new.example"
    assert_counts_match(adapter, org)


async def test_licence_exhaustion_and_reactivation(adapter: SalesforceRestOrg, org: EmulatedOrg) -> None:
    holder = org.create_user(record(org, "holder@contoso.com", "Platform User"))

    [refused] = await adapter.create_users([record(org, "second@contoso.com", "Platform User")])
    assert isinstance(refused.error, PermanentError) and refused.error.code == "LICENSE_LIMIT_EXCEEDED"

    [deactivated] = await adapter.update_users([{"Id": holder, "IsActive": False}])
    [created] = await adapter.create_users([record(org, "second@contoso.com", "Platform User")])
    [reactivated] = await adapter.update_users([{"Id": holder, "IsActive": True}])

    assert deactivated.error is None and created.error is None
    assert isinstance(reactivated.error, PermanentError) and reactivated.error.code == "LICENSE_LIMIT_EXCEEDED"
    assert org.license_usage("Platform") == (1, 1)


@pytest.mark.parametrize(
    ("fault", "code"),
    [("lock", "UNABLE_TO_LOCK_ROW"), ("limit", "REQUEST_LIMIT_EXCEEDED"), ("unavailable", "SERVER_UNAVAILABLE"),
     ("html503", "HTTP_503")],
)
async def test_whole_call_faults_become_transient_errors(
    adapter: SalesforceRestOrg, org: EmulatedOrg, fault: str, code: str
) -> None:
    org.faults.fail_next(fault)
    with pytest.raises(TransientError) as caught:
        await adapter.find_users(FIELDS, usernames=["a@contoso.com"])
    assert caught.value.code == code

    org.faults.fail_next(fault)
    results = await adapter.create_users([record(org, f"r{i}@contoso.com") for i in range(3)])
    assert [(r.salesforce_id, type(r.error), r.error.code) for r in results] == [(None, TransientError, code)] * 3
    assert org.users() == []
    assert_counts_match(adapter, org)


async def test_a_hang_longer_than_the_timeout_is_transient(emulator: EmulatorHandle, org: EmulatedOrg) -> None:
    adapter = SalesforceRestOrg(partial(dev_token_client, emulator.instance_url, emulator.token, emulator.ca_path), timeout=0.3)
    org.faults.hang_seconds = 5
    org.faults.fail_next("hang")

    with pytest.raises(TransientError) as caught:
        await adapter.profile_ids()

    assert caught.value.code == "Timeout"


async def test_expired_session_reauthenticates_once_and_succeeds(adapter: SalesforceRestOrg, org: EmulatedOrg) -> None:
    await adapter.profile_ids()
    org.expire_session()

    [result] = await adapter.create_users([record(org, "after.expiry@contoso.com")])

    assert result.error is None and org.get_user(result.salesforce_id)
    assert org.calls.by_kind == {"query": 1, "composite_create": 2}  # the 401 and the retry
    assert_counts_match(adapter, org)

    org.expire_session(2)
    with pytest.raises(SessionExpired):
        await adapter.find_users(FIELDS, usernames=["after.expiry@contoso.com"])
    assert org.calls.by_kind["query"] == 3  # retried exactly once


async def test_tls_is_verified_against_the_given_ca_only(emulator: EmulatorHandle) -> None:
    adapter = SalesforceRestOrg(partial(dev_token_client, emulator.instance_url, emulator.token), timeout=5)

    with pytest.raises(PermanentError) as caught:
        await adapter.profile_ids()

    assert caught.value.code == "TLS_ERROR"


def test_dev_token_is_refused_for_a_real_instance() -> None:
    with pytest.raises(ConfigurationError):
        dev_token_client("https://contoso.my.salesforce.com", "token")
    with pytest.raises(ConfigurationError):
        client_credentials_client("key", "secret", "login")


async def test_logs_carry_no_usernames_or_tokens(
    adapter: SalesforceRestOrg, org: EmulatedOrg, emulator: EmulatorHandle, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    org.expire_session()

    await adapter.create_users([record(org, "private.person@contoso.com"), record(org, "bad", Alias="x")])

    assert "composite/sobjects POST: 2 records, 1 failed" in caplog.text
    assert "private.person" not in caplog.text and emulator.token not in caplog.text


async def test_user_roles_are_queried_once_and_a_bad_role_id_is_refused(adapter: SalesforceRestOrg, org: EmulatedOrg) -> None:
    sales = org.add_user_role("Western Sales", "WesternSales")
    org.add_user_role("Support")
    roles = await adapter.user_roles()
    assert await adapter.user_roles() == roles
    assert {(r.id, r.name, r.developer_name) for r in roles} == {
        (sales, "Western Sales", "WesternSales"), (org.user_roles_by_name()["Support"], "Support", "Support")}
    assert org.calls.by_kind["query"] == 1

    good, bad = await adapter.create_users([record(org, "role.ok@contoso.com", UserRoleId=sales),
                                            record(org, "role.bad@contoso.com", UserRoleId="00E000000000009AAA")])
    assert good.error is None and org.get_user(good.salesforce_id)["UserRoleId"] == sales
    assert bad.error is not None and bad.error.code == "INVALID_CROSS_REFERENCE_KEY"


async def test_a_refresh_reads_profiles_and_roles_again_but_not_within_the_minimum_age(
    emulator: EmulatorHandle, org: EmulatedOrg, adapter: SalesforceRestOrg
) -> None:
    assert "Field Sales" not in await adapter.profile_ids()
    org.add_profile("Field Sales")
    assert "Field Sales" not in await adapter.profile_ids(refresh=True)  # read a moment ago: the cache answers
    assert org.calls.by_kind["query"] == 1

    eager = SalesforceRestOrg(partial(dev_token_client, emulator.instance_url, emulator.token, emulator.ca_path),
                              min_refresh_seconds=0)
    assert await eager.user_roles() == []
    assert "Field Sales" in await eager.profile_ids()
    org.add_user_role("Field Sales Team")
    assert await eager.user_roles() == []  # no refresh asked: cached
    assert [r.name for r in await eager.user_roles(refresh=True)] == ["Field Sales Team"]
    assert org.calls.by_kind["query"] == 4
