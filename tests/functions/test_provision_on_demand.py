"""provision_on_demand as the host calls it: a real func.HttpRequest with the route parameter the host
extracts, a func.HttpResponse out, and the outcome checked in the emulated org and the state store."""
from __future__ import annotations

import json
import logging
import uuid

import azure.functions as func
import pytest

from shared.core.guidance import guidance_for

from .new_hires import hire, upn_of

URL = "https://provisioning.example/api/provision/"


def request(entra_id: str) -> func.HttpRequest:
    return func.HttpRequest("POST", URL + entra_id, body=b"", route_params={"entra_id": entra_id})


@pytest.fixture(scope="module", autouse=True)
def licences(stack):
    """Enough Salesforce licences for this module's hires: the demo org is deliberately short."""
    stack.org.set_license_pool("Salesforce", 100)


@pytest.fixture
def on_demand(functions):
    async def call(entra_id: str) -> tuple[int, dict]:
        response = await functions["provision_on_demand"](request(entra_id))
        assert response.mimetype == "application/json"
        return response.status_code, json.loads(response.get_body())
    return call


def steps(report: dict) -> dict[str, dict]:
    assert [s["step"] for s in report["steps"]] == ["connection", "import", "scope", "match", "action"]
    return {s["step"]: s for s in report["steps"]}


def salesforce_users(stack, username: str) -> list[dict]:
    return [u for u in stack.org.users() if u["Username"] == username]


async def test_an_assigned_user_is_created_now_and_every_step_is_reported(stack, state, on_demand, caplog):
    user_id = hire(stack, "Edsger", "Dijkstra", role="Sales User")
    upn = upn_of(stack, user_id)
    caplog.set_level(logging.DEBUG)

    status, report = await on_demand(user_id)

    assert status == 200 and report["succeeded"] is True and report["entraId"] == user_id
    s = steps(report)
    assert s["connection"]["status"] == "success"
    imported = s["import"]
    assert imported["objectId"] == user_id
    assert {"userPrincipalName", "mail", "givenName", "surname", "accountEnabled"} <= set(imported["attributesRead"])
    assert imported["mappedFields"]["Username"] == upn.lower()
    assert imported["mappedFields"]["ProfileId"] == stack.org.profile_id("Sales User")
    assert s["scope"]["inScope"] is True
    assert (s["match"]["status"], s["match"]["matchedBy"]) == ("success", None)
    action = s["action"]
    assert (action["status"], action["action"]) == ("success", "create")
    [created] = salesforce_users(stack, upn.lower())
    assert action["salesforceId"] == created["Id"] == state.get_link(user_id).salesforce_id
    assert (created["FirstName"], created["LastName"], created["IsActive"]) == ("Edsger", "Dijkstra", True)

    # The logs carry the object id and codes, never the user's attribute values.
    logged = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records)
    assert user_id in logged
    for value in (upn, upn.lower(), "Edsger", "Dijkstra"):
        assert value not in logged
    [audit] = [r for r in caplog.records if getattr(r, "audit_kind", None) == "operation"]
    assert (audit.action, audit.status) == ("create", "success")
    assert audit.message_id.startswith("on-demand/")


async def test_a_second_call_for_an_unchanged_user_is_a_noop_without_salesforce_writes(stack, on_demand):
    user_id = hire(stack, "Barbara", "Liskov")
    await on_demand(user_id)
    writes = stack.org.calls.writes

    status, report = await on_demand(user_id)

    assert status == 200 and report["succeeded"] is True
    s = steps(report)
    assert s["match"]["matchedBy"] == "link"
    assert (s["action"]["status"], s["action"]["action"], s["action"]["modifiedProperties"]) == ("skipped", "noop", [])
    assert s["action"]["salesforceId"] == s["match"]["salesforceId"]
    assert stack.org.calls.writes == writes
    assert len(salesforce_users(stack, "barbara.liskov@contoso.com")) == 1


async def test_an_existing_salesforce_user_is_matched_by_username_and_adopted(stack, state, on_demand):
    user_id = hire(stack, "Donald", "Knuth", role="Standard User")
    upn = upn_of(stack, user_id)
    # A user someone else created (say the built-in connector), with an outdated last name.
    existing = stack.org.create_user({
        "Username": upn.lower(), "Alias": upn[:8], "Email": upn, "FirstName": "Donald", "LastName": "Knuth-old",
        "ProfileId": stack.org.profile_id("Standard User"), "LocaleSidKey": "en_GB", "EmailEncodingKey": "ISO-8859-1",
        "LanguageLocaleKey": "en_US", "TimeZoneSidKey": "America/Los_Angeles",
    })

    status, report = await on_demand(user_id)

    s = steps(report)
    assert status == 200
    assert (s["match"]["matchedBy"], s["match"]["salesforceId"]) == ("Username", existing)
    assert (s["action"]["action"], s["action"]["modifiedProperties"]) == ("update", ["LastName"])
    assert stack.org.get_user(existing)["LastName"] == "Knuth"
    assert len(salesforce_users(stack, upn.lower())) == 1
    assert state.get_link(user_id).salesforce_id == existing


async def test_an_unassigned_user_is_out_of_scope_and_nothing_is_created(stack, on_demand):
    upn = f"Niklaus.Wirth@{stack.tenant.domain}"
    user_id = stack.tenant.add_user(userPrincipalName=upn, displayName="Niklaus Wirth", givenName="Niklaus",
                                    surname="Wirth", mail=upn)
    writes = stack.org.calls.writes

    status, report = await on_demand(user_id)

    assert status == 200
    s = steps(report)
    assert s["scope"]["inScope"] is False
    assert "not assigned to the Salesforce app" in s["scope"]["detail"]
    assert "mappedFields" not in s["import"]
    assert (s["match"]["matchedBy"], s["action"]["action"], s["action"]["status"]) == (None, "skip", "skipped")
    assert salesforce_users(stack, upn.lower()) == []
    assert stack.org.calls.writes == writes


async def test_a_user_without_mail_fails_with_required_field_missing_and_guidance(stack, state, on_demand):
    user_id = hire(stack, "Tony", "Hoare", mail=None)

    status, report = await on_demand(user_id)

    assert status == 200 and report["succeeded"] is False
    s = steps(report)
    assert "mail" in s["import"]["attributesEmpty"]
    action = s["action"]
    assert (action["status"], action["action"]) == ("failure", "create")
    error = action["error"]
    assert error["code"] == "REQUIRED_FIELD_MISSING" and error["transient"] is False
    assert error["connectorCode"] == "SalesforceRequiredFieldMissing"
    assert error["guidance"] == guidance_for("REQUIRED_FIELD_MISSING").advice
    assert "Email" in error["message"]
    assert salesforce_users(stack, "tony.hoare@contoso.com") == []
    assert state.get_link(user_id) is None


@pytest.mark.parametrize("bad_id", ["not-a-guid", "12345", str(uuid.uuid4()) + "x", ""])
async def test_a_path_that_is_not_an_object_id_is_a_400_without_any_call(stack, on_demand, bad_id):
    calls = sum(stack.graph.calls.values()), stack.org.calls.total

    status, body = await on_demand(bad_id)

    assert status == 400
    assert "Entra object id" in body["error"]
    assert (sum(stack.graph.calls.values()), stack.org.calls.total) == calls


async def test_graph_refusing_the_connection_check_is_a_502_naming_the_connection_step(stack, on_demand):
    user_id = hire(stack, "Frances", "Allen")
    stack.graph.faults.add("servicePrincipals.*", 403, times=1)

    status, report = await on_demand(user_id)

    s = steps(report)
    assert status == 502 and report["succeeded"] is False
    assert s["connection"]["status"] == "failure" and s["connection"]["error"]["system"] == "graph"
    assert {s[n]["status"] for n in ("import", "scope", "match", "action")} == {"skipped"}
    assert salesforce_users(stack, upn_of(stack, user_id).lower()) == []


async def test_a_salesforce_limit_while_matching_is_reported_as_temporary(stack, on_demand):
    await on_demand(hire(stack, "John", "Backus"))  # Salesforce profiles are now cached by this worker
    user_id = hire(stack, "Fran", "Allen")
    stack.org.faults.fail_next("limit")  # the SOQL query that matches the user

    status, report = await on_demand(user_id)

    s = steps(report)
    assert status == 200 and report["succeeded"] is False
    assert s["scope"]["inScope"] is True
    assert s["match"]["status"] == "failure"
    assert (s["match"]["error"]["code"], s["match"]["error"]["transient"]) == ("REQUEST_LIMIT_EXCEEDED", True)
    assert "try again" in s["match"]["detail"]
    assert s["action"]["status"] == "skipped"


def test_the_route_is_a_post_behind_a_function_key():
    import function_app
    from emulators.functions_host import binding_settings

    [trigger] = [b for b in binding_settings(function_app.app)["provision_on_demand"] if b["direction"] == "IN"]
    assert (trigger["type"], trigger["route"], trigger["methods"], trigger["authLevel"]) == (
        "httpTrigger", "provision/{entra_id}", ["POST"], "FUNCTION")
