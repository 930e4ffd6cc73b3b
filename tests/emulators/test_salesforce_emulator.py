"""The Salesforce emulator over real HTTPS: wire shapes, User rules, SOQL, collections, auth, faults."""
from __future__ import annotations

from typing import Any, Iterator

import pytest
import requests
from simple_salesforce import format_soql

from emulators.salesforce import EmulatedOrg, EmulatorHandle, UsernameRegistry, run_salesforce_emulator
from emulators.salesforce.knobs import RawResponse

API = "/services/data/v59.0/"


class Client:
    """Plain requests against the emulator, trusting its throwaway CA only."""

    def __init__(self, handle: EmulatorHandle, token: str | None = None) -> None:
        self.handle = handle
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = handle.ca_path
        self.session.headers["Authorization"] = f"Bearer {token or handle.token}"

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, self.handle.instance_url + API + path, timeout=10, **kwargs)

    def query(self, soql: str) -> requests.Response:
        return self.call("GET", "query/", params={"q": soql})


def user_fields(username: str = "ada@contoso.com", **overrides: Any) -> dict[str, Any]:
    fields = {
        "Username": username,
        "LastName": "Lovelace",
        "FirstName": "Ada",
        "Email": username,
        "Alias": "alove",
        "TimeZoneSidKey": "Europe/London",
        "LocaleSidKey": "en_GB",
        "EmailEncodingKey": "UTF-8",
        "LanguageLocaleKey": "en_US",
        "ProfileId": None,  # filled per org
    }
    fields.update(overrides)
    return fields


@pytest.fixture
def org() -> EmulatedOrg:
    return EmulatedOrg(licenses={"Salesforce": 3, "Chatter Free": 100})


@pytest.fixture
def sf(org: EmulatedOrg) -> Iterator[Client]:
    with run_salesforce_emulator(org) as handle:
        yield Client(handle)


def new_user(org: EmulatedOrg, username: str = "ada@contoso.com", **overrides: Any) -> dict[str, Any]:
    return user_fields(username, ProfileId=org.profile_id("Standard User"), **overrides)


def test_create_returns_201_and_the_user_reads_back_with_generated_nickname(sf: Client, org: EmulatedOrg) -> None:
    response = sf.call("POST", "sobjects/User/", json=new_user(org, "ada.l@contoso.com"))

    assert response.status_code == 201
    body = response.json()
    assert body["success"] is True and body["errors"] == [] and body["id"].startswith("005") and len(body["id"]) == 18
    assert response.headers["Sforce-Limit-Info"] == "api-usage=1/15000"
    read = sf.call("GET", f"sobjects/User/{body['id']}").json()
    assert read["attributes"]["type"] == "User"
    assert (read["Name"], read["CommunityNickname"], read["IsActive"]) == ("Ada Lovelace", "ada.l", True)


def test_missing_required_fields_are_listed(sf: Client, org: EmulatedOrg) -> None:
    record = new_user(org)
    del record["Alias"], record["LastName"]

    response = sf.call("POST", "sobjects/User", json=record)

    assert response.status_code == 400
    assert response.json() == [
        {"message": "Required fields are missing: [LastName, Alias]", "errorCode": "REQUIRED_FIELD_MISSING",
         "fields": ["LastName", "Alias"]}
    ]


@pytest.mark.parametrize(
    ("overrides", "code", "fields"),
    [
        ({"Alias": "ninechars"}, "STRING_TOO_LONG", ["Alias"]),
        ({"LanguageLocaleKey": "de_DE"}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", ["LanguageLocaleKey"]),
        ({"TimeZoneSidKey": "Mars/Olympus_Mons"}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", ["TimeZoneSidKey"]),
        ({"Username": "not-an-email"}, "FIELD_INTEGRITY_EXCEPTION", ["Username"]),
        ({"Email": "nobody"}, "INVALID_EMAIL_ADDRESS", ["Email"]),
        ({"ProfileId": "00e000000000000AAA"}, "INVALID_CROSS_REFERENCE_KEY", []),
        ({"FavouriteColour": "teal"}, "INVALID_FIELD", ["FavouriteColour"]),
        ({"Id": "005000000000001AAA"}, "INVALID_FIELD", ["Id"]),
        ({"IsActive": "yes"}, "INVALID_TYPE_ON_FIELD_IN_RECORD", ["IsActive"]),
    ],
)
def test_invalid_user_is_refused_with_the_salesforce_code(
    sf: Client, org: EmulatedOrg, overrides: dict, code: str, fields: list[str]
) -> None:
    record = new_user(org)
    record.update(overrides)

    response = sf.call("POST", "sobjects/User", json=record)

    assert response.status_code == 400
    [error] = response.json()
    assert (error["errorCode"], error["fields"]) == (code, fields)
    assert org.users() == []


def test_field_names_are_case_insensitive_and_de_is_a_valid_language(sf: Client, org: EmulatedOrg) -> None:
    record = {k.lower(): v for k, v in new_user(org, LanguageLocaleKey="de").items()}

    assert sf.call("POST", "sobjects/User", json=record).status_code == 201
    assert org.users()[0]["LanguageLocaleKey"] == "de"


def test_usernames_are_unique_across_orgs_and_case_insensitive() -> None:
    registry = UsernameRegistry()
    registry.reserve("taken@elsewhere.com")
    first, second = EmulatedOrg(registry=registry), EmulatedOrg(registry=registry)
    first.create_user(new_user(first, "Grace@Contoso.com"))

    with run_salesforce_emulator(second) as handle:
        client = Client(handle)
        clash = client.call("POST", "sobjects/User", json=new_user(second, "grace@contoso.com"))
        elsewhere = client.call("POST", "sobjects/User", json=new_user(second, "TAKEN@elsewhere.com"))
        fine = client.call("POST", "sobjects/User", json=new_user(second, "grace2@contoso.com"))

    assert [r.json()[0]["errorCode"] for r in (clash, elsewhere)] == ["DUPLICATE_USERNAME", "DUPLICATE_USERNAME"]
    assert clash.json()[0]["fields"] == ["Username"]
    assert fine.status_code == 201


def test_duplicate_nickname_in_the_org(sf: Client, org: EmulatedOrg) -> None:
    org.create_user(new_user(org, "a@contoso.com", CommunityNickname="ada"))

    response = sf.call("POST", "sobjects/User", json=new_user(org, "b@contoso.com", CommunityNickname="ADA"))

    assert response.json()[0]["errorCode"] == "DUPLICATE_COMM_NICKNAME"


def test_licence_pool_limits_creates_and_reactivation_and_deactivation_frees_one(sf: Client, org: EmulatedOrg) -> None:
    ids = [org.create_user(new_user(org, f"u{i}@contoso.com")) for i in range(3)]
    assert org.license_usage("Salesforce") == (3, 3)

    over = sf.call("POST", "sobjects/User", json=new_user(org, "u3@contoso.com"))
    assert over.status_code == 400
    assert over.json()[0] == {"message": "License Limit Exceeded", "errorCode": "LICENSE_LIMIT_EXCEEDED", "fields": []}

    assert sf.call("PATCH", f"sobjects/User/{ids[0]}", json={"IsActive": False}).status_code == 204
    assert sf.call("POST", "sobjects/User", json=new_user(org, "u3@contoso.com")).status_code == 201
    reactivate = sf.call("PATCH", f"sobjects/User/{ids[0]}", json={"IsActive": True})
    assert reactivate.json()[0]["errorCode"] == "LICENSE_LIMIT_EXCEEDED"
    chatter = org.profile_id("Chatter Free User")
    assert sf.call("PATCH", f"sobjects/User/{ids[0]}", json={"IsActive": True, "ProfileId": chatter}).status_code == 204


def test_email_change_stays_pending_until_confirmed(sf: Client, org: EmulatedOrg) -> None:
    user_id = org.create_user(new_user(org))

    assert sf.call("PATCH", f"sobjects/User/{user_id}", json={"Email": "ada@new.example"}).status_code == 204
    assert sf.call("GET", f"sobjects/User/{user_id}").json()["Email"] == "ada@contoso.com"
    assert org.pending_email(user_id) == "ada@new.example"

    org.confirm_email(user_id)
    assert sf.call("GET", f"sobjects/User/{user_id}").json()["Email"] == "ada@new.example"


def test_users_cannot_be_deleted_and_unknown_ids_are_404(sf: Client, org: EmulatedOrg) -> None:
    user_id = org.create_user(new_user(org))

    assert sf.call("DELETE", f"sobjects/User/{user_id}").status_code == 405
    assert org.get_user(user_id) is not None
    missing = sf.call("PATCH", "sobjects/User/005000000000000AAA", json={"Title": "x"})
    assert (missing.status_code, missing.json()[0]["errorCode"]) == (404, "NOT_FOUND")


def test_soql_escapes_in_and_like_and_case_insensitive_usernames(sf: Client, org: EmulatedOrg) -> None:
    org.set_license_pool("Salesforce", 10)
    for name in ("o'brien@contoso.com", "back\\slash@contoso.com", "ann_lee@contoso.com", "annxlee@contoso.com"):
        org.create_user(new_user(org, name, Alias="x"))

    def usernames(soql: str) -> list[str]:
        response = sf.query(soql)
        assert response.status_code == 200, response.text
        return sorted(r["Username"] for r in response.json()["records"])

    assert usernames(format_soql("SELECT Username FROM User WHERE Username = {}", "O'BRIEN@contoso.com")) == [
        "o'brien@contoso.com"
    ]
    assert usernames(format_soql("select username from user where USERNAME in {}", ["back\\slash@contoso.com", "x@y.z"])) == [
        "back\\slash@contoso.com"
    ]
    assert usernames(format_soql("SELECT Username FROM User WHERE Username LIKE '{:like}%'", "ann_")) == [
        "ann_lee@contoso.com"
    ]
    assert usernames("SELECT Username FROM User WHERE Username LIKE 'ann_lee%'") == [
        "ann_lee@contoso.com", "annxlee@contoso.com"
    ]
    assert usernames(
        "SELECT Username FROM User WHERE (Username != 'annxlee@contoso.com' AND IsActive = true) OR Alias = 'none' ORDER BY Username LIMIT 2"
    ) == ["ann_lee@contoso.com", "back\\slash@contoso.com"]


@pytest.mark.parametrize(
    ("soql", "code"),
    [
        ("SELECT Id FROM User WHERE Username = 'a' AND Alias = 'b' OR Alias = 'c'", "MALFORMED_QUERY"),
        ("SELECT Id FROM User WHERE Username = 'unterminated", "MALFORMED_QUERY"),
        ("SELECT Id FROM User WHERE", "MALFORMED_QUERY"),
        ("DELETE FROM User", "MALFORMED_QUERY"),
        ("SELECT Shoe FROM User", "INVALID_FIELD"),
        ("SELECT Id FROM Account", "INVALID_TYPE"),
    ],
)
def test_unsupported_or_broken_soql_is_400(sf: Client, soql: str, code: str) -> None:
    response = sf.query(soql)

    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == code


def test_query_pages_follow_next_records_url(sf: Client, org: EmulatedOrg) -> None:
    org.set_license_pool("Salesforce", 500)
    org.query_page_size = 200
    for i in range(450):
        org.create_user(new_user(org, f"p{i}@contoso.com", Alias=f"p{i}"))

    page = sf.query("SELECT Id FROM User").json()
    seen = [r["Id"] for r in page["records"]]
    while not page["done"]:
        page = sf.session.get(sf.handle.instance_url + page["nextRecordsUrl"], timeout=10).json()
        seen += [r["Id"] for r in page["records"]]

    assert page["totalSize"] == 450 and len(set(seen)) == 450
    assert org.calls.by_kind["query_more"] == 2


def test_collection_reports_each_record_with_status_code_and_http_200(sf: Client, org: EmulatedOrg) -> None:
    records = [
        {"attributes": {"type": "User"}, **new_user(org, "ok@contoso.com")},
        {"attributes": {"type": "User"}, **new_user(org, "bad@contoso.com", Alias="waytoolong")},
    ]

    response = sf.call("POST", "composite/sobjects", json={"allOrNone": False, "records": records})

    assert response.status_code == 200
    ok, bad = response.json()
    assert ok["success"] is True and ok["id"].startswith("005")
    assert bad["success"] is False
    assert bad["errors"][0]["statusCode"] == "STRING_TOO_LONG" and bad["errors"][0]["fields"] == ["Alias"]


def test_collection_all_or_none_rolls_everything_back_and_frees_usernames(sf: Client, org: EmulatedOrg) -> None:
    records = [
        {"attributes": {"type": "User"}, **new_user(org, "first@contoso.com")},
        {"attributes": {"type": "User"}, **new_user(org, "second@contoso.com", Email="broken")},
    ]

    results = sf.call("POST", "composite/sobjects", json={"allOrNone": True, "records": records}).json()

    assert [r["errors"][0]["statusCode"] for r in results] == ["ALL_OR_NONE_OPERATION_ROLLED_BACK", "INVALID_EMAIL_ADDRESS"]
    assert org.users() == []
    assert sf.call("POST", "sobjects/User", json=new_user(org, "first@contoso.com")).status_code == 201


def test_collection_update_needs_ids_and_malformed_requests_are_400(sf: Client, org: EmulatedOrg) -> None:
    user_id = org.create_user(new_user(org))
    update = [{"attributes": {"type": "User"}, "id": user_id, "Title": "Countess"}, {"attributes": {"type": "User"}, "Title": "x"}]

    first, second = sf.call("PATCH", "composite/sobjects", json={"records": update}).json()

    assert first == {"id": user_id, "success": True, "errors": []}
    assert second["errors"][0]["statusCode"] == "MISSING_ARGUMENT"
    assert org.get_user(user_id)["Title"] == "Countess"
    too_many = {"records": [{"attributes": {"type": "User"}, **new_user(org, f"m{i}@contoso.com")} for i in range(201)]}
    assert sf.call("POST", "composite/sobjects", json=too_many).json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
    assert sf.call("POST", "composite/sobjects", data="{not json", headers={"Content-Type": "application/json"}).status_code == 400
    assert sf.call("POST", "composite/sobjects", json={"records": [{"Title": "no type"}]}).status_code == 400


def test_bad_token_and_expired_session_get_the_json_list_401(sf: Client, org: EmulatedOrg) -> None:
    invalid = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    wrong = Client(sf.handle, token="not-the-token").call("GET", "limits")
    assert (wrong.status_code, wrong.json()) == (401, invalid)

    org.expire_session()
    expired = sf.call("GET", "limits")
    assert (expired.status_code, expired.json()) == (401, invalid)
    assert Client(sf.handle).call("GET", "limits").status_code == 200


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [("lock", 400, "UNABLE_TO_LOCK_ROW"), ("limit", 403, "REQUEST_LIMIT_EXCEEDED"), ("unavailable", 503, "SERVER_UNAVAILABLE")],
)
def test_json_faults_hit_the_next_calls_only(sf: Client, org: EmulatedOrg, kind: str, status: int, code: str) -> None:
    org.faults.fail_next(kind, count=2)

    responses = [sf.call("GET", "limits") for _ in range(3)]

    assert [r.status_code for r in responses] == [status, status, 200]
    assert responses[0].json()[0]["errorCode"] == code


def test_html_503_hang_and_fault_rate(sf: Client, org: EmulatedOrg) -> None:
    org.faults.fail_next("html503")
    html = sf.call("GET", "limits")
    assert html.status_code == 503 and html.headers["Content-Type"].startswith("text/html")

    org.faults.hang_seconds = 3
    org.faults.fail_next("hang")
    with pytest.raises(requests.Timeout):
        sf.session.get(sf.handle.instance_url + API + "limits", timeout=0.3)

    org.faults.fail_rate("lock", 0.5, seed=7)
    statuses = [sf.call("GET", "limits").status_code for _ in range(20)]
    assert 0 < statuses.count(400) < 20 and set(statuses) == {200, 400}
    with pytest.raises(ValueError):
        org.faults.fail_next("gremlins")


def test_raw_answers_go_to_the_next_call_of_their_kind_and_leave_the_org_alone(sf: Client, org: EmulatedOrg) -> None:
    org.faults.respond_raw(RawResponse(502, b"<html>Bad Gateway</html>", "text/html"), kind="user_create")
    org.faults.respond_raw(RawResponse(200, b'{"totalSize":1,"do'), kind="query")
    assert org.faults.pending_raw() == 2

    assert sf.call("GET", "limits").status_code == 200  # another kind: served normally
    truncated = sf.query("SELECT Id FROM User")
    assert (truncated.status_code, truncated.content) == (200, b'{"totalSize":1,"do')
    gateway = sf.call("POST", "sobjects/User/", json=new_user(org, "raw@contoso.com"))
    assert gateway.status_code == 502 and gateway.headers["Content-Type"] == "text/html"
    assert gateway.content == b"<html>Bad Gateway</html>"
    assert org.users() == [] and org.faults.pending_raw() == 0
    assert sf.call("POST", "sobjects/User/", json=new_user(org, "raw@contoso.com")).status_code == 201


def test_the_query_log_keeps_each_soql_text_and_the_ids_it_returned(sf: Client, org: EmulatedOrg) -> None:
    created = sf.call("POST", "sobjects/User/", json=new_user(org, "logged@contoso.com")).json()["id"]
    sf.query(format_soql("SELECT Id FROM User WHERE Username IN {}", ["logged@contoso.com", "x' OR Id != '"]))
    text, ids = org.query_log[-1]
    assert "x\\' OR Id != \\'" in text and ids == (created,)


def test_calls_are_counted_by_kind_with_writes_separately(sf: Client, org: EmulatedOrg) -> None:
    user_id = sf.call("POST", "sobjects/User", json=new_user(org)).json()["id"]
    sf.call("GET", f"sobjects/User/{user_id}")
    sf.call("PATCH", f"sobjects/User/{user_id}", json={"Title": "Countess"})
    sf.query("SELECT Id FROM Profile")
    response = sf.call("GET", "limits")

    assert org.calls.snapshot() == {
        "total": 5,
        "writes": 2,
        "by_kind": {"user_create": 1, "user_read": 1, "user_update": 1, "query": 1, "limits": 1},
    }
    assert response.json()["DailyApiRequests"] == {"Max": 15000, "Remaining": 14995}
    assert response.headers["Sforce-Limit-Info"] == "api-usage=5/15000"


def test_uri_longer_than_16384_bytes_is_414(sf: Client) -> None:
    response = sf.query("SELECT Id FROM User WHERE Username IN ('" + "a" * 17000 + "')")

    assert response.status_code == 414


def test_username_change_frees_the_old_name_and_federation_ids_are_unique(sf: Client, org: EmulatedOrg) -> None:
    first = org.create_user(new_user(org, "old@contoso.com", FederationIdentifier="fed-1"))
    second = org.create_user(new_user(org, "other@contoso.com"))

    assert sf.call("PATCH", f"sobjects/User/{first}", json={"Username": "new@contoso.com"}).status_code == 204
    taken = sf.call("PATCH", f"sobjects/User/{second}", json={"Username": "NEW@contoso.com"})
    reused = sf.call("PATCH", f"sobjects/User/{second}", json={"Username": "old@contoso.com"})
    clash = sf.call("PATCH", f"sobjects/User/{second}", json={"FederationIdentifier": "fed-1"})

    assert taken.json()[0]["errorCode"] == "DUPLICATE_USERNAME"
    assert reused.status_code == 204
    assert (clash.json()[0]["errorCode"], clash.json()[0]["fields"]) == ("DUPLICATE_VALUE", ["FederationIdentifier"])
    assert org.registry.owner_of("other@contoso.com") is None


def _soap_login(sf: Client, version: str, username: str, password: str) -> requests.Response:
    envelope = ('<?xml version="1.0" encoding="utf-8" ?><env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/"'
                ' xmlns:urn="urn:partner.soap.sforce.com"><env:Body><urn:login>'
                f"<urn:username>{username}</urn:username><urn:password>{password}</urn:password>"
                "</urn:login></env:Body></env:Envelope>")
    return sf.session.post(f"{sf.handle.instance_url}/services/Soap/u/{version}", data=envelope,
                           headers={"Content-Type": "text/xml", "SOAPAction": "login"}, timeout=10)


def test_soap_login_needs_password_plus_token_of_an_active_user_and_an_api_version_before_65(
    sf: Client, org: EmulatedOrg
) -> None:
    user = org.create_user(new_user(org, "soap.user@contoso.com"))
    org.set_password("soap.user@contoso.com", "pw", "TOKEN")
    ok = _soap_login(sf, "59.0", "SOAP.User@contoso.com", "pwTOKEN")
    assert ok.status_code == 200 and "<sessionId>" in ok.text and f"<userId>{user}</userId>" in ok.text
    for version, password, code in (("59.0", "pw", "INVALID_LOGIN"), ("65.0", "pwTOKEN", "UNSUPPORTED_API_VERSION")):
        refused = _soap_login(sf, version, "soap.user@contoso.com", password)
        assert refused.status_code == 500 and f"<sf:exceptionCode>{code}</sf:exceptionCode>" in refused.text
    org.update_user(user, {"IsActive": False})
    assert _soap_login(sf, "59.0", "soap.user@contoso.com", "pwTOKEN").status_code == 500
    assert org.calls.total == 0  # logins are not API calls
