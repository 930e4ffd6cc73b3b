from shared.core.models import EntraUser, EntraUserState, SalesforceUser, UserLink
from shared.core.planning import index_for_matching, match_by_precedence, out_of_scope_reason, plan_user

ROLE = "11111111-1111-1111-1111-111111111111"
DEFAULT_ACCESS = "00000000-0000-0000-0000-000000000000"
DESIRED = {"Username": "ana@contoso.com", "Email": "ana@contoso.com", "LastName": "Ruiz", "ProfileId": "00e1"}


def sf_user(**fields):
    base = {"Id": "005A", "IsActive": True, **DESIRED}
    base.update(fields)
    return SalesforceUser(base["Id"], base)


def test_create_when_in_scope_and_no_match():
    op = plan_user("e1", DESIRED, None, None)
    assert op.action == "create"
    assert op.record == {**DESIRED, "IsActive": True}
    assert op.changes["LastName"] == (None, "Ruiz")


def test_noop_when_every_field_equal():
    op = plan_user("e1", DESIRED, sf_user(), None)
    assert op.action == "noop" and not op.is_write and op.record == {}


def test_update_sends_only_changed_fields():
    op = plan_user("e1", {**DESIRED, "LastName": "Ruiz-Pérez"}, sf_user(), None)
    assert op.action == "update"
    assert op.record == {"Id": "005A", "LastName": "Ruiz-Pérez"}
    assert op.changes == {"LastName": ("Ruiz", "Ruiz-Pérez")}


def test_username_compared_case_insensitively():
    assert plan_user("e1", {**DESIRED, "Username": "ANA@contoso.com"}, sf_user(), None).action == "noop"


def test_create_only_fields_are_not_updated():
    op = plan_user("e1", {**DESIRED, "LastName": "Other"}, sf_user(), None, create_only=frozenset({"LastName"}))
    assert op.action == "noop"


def test_pending_email_is_not_sent_again():
    link = UserLink("e1", "005A", pending_email="new@contoso.com")
    op = plan_user("e1", {**DESIRED, "Email": "new@contoso.com"}, sf_user(), link)
    assert op.action == "noop"
    other = plan_user("e1", {**DESIRED, "Email": "newer@contoso.com"}, sf_user(), link)
    assert other.changes == {"Email": ("ana@contoso.com", "newer@contoso.com")}


def test_deactivate_out_of_scope_active_user_never_delete():
    op = plan_user("e1", None, sf_user(), None, scope_reason="disabled in Entra")
    assert op.action == "deactivate"
    assert op.record == {"Id": "005A", "IsActive": False}
    assert op.reason == "disabled in Entra"


def test_out_of_scope_inactive_user_is_noop_and_unknown_is_skip():
    assert plan_user("e1", None, sf_user(IsActive=False), None).action == "noop"
    assert plan_user("e1", None, None, None).action == "skip"


def test_reactivate_inactive_user_back_in_scope_with_changes():
    op = plan_user("e1", {**DESIRED, "LastName": "New"}, sf_user(IsActive=False), None)
    assert op.action == "reactivate"
    assert op.record == {"Id": "005A", "LastName": "New", "IsActive": True}


def test_match_prefers_sticky_link_over_matching_attribute():
    linked, by_name = sf_user(Id="005L"), sf_user(Id="005N")
    link = UserLink("e1", "005L")
    index = index_for_matching([by_name], ["Username"])
    assert match_by_precedence(link, [("Username", "ana@contoso.com")], {"005L": linked}, index) is linked
    assert match_by_precedence(None, [("Username", "ANA@contoso.com")], {}, index) is by_name
    # out of scope: only a linked (managed) user is ever touched
    assert match_by_precedence(None, [], {}, index) is None


def test_scope_reasons():
    user = EntraUser("e1", {"accountEnabled": True})
    assert out_of_scope_reason(EntraUserState("e1", user, frozenset({ROLE}))) is None
    assert out_of_scope_reason(EntraUserState("e1", None)) == "deleted in Entra"
    assert out_of_scope_reason(EntraUserState("e1", EntraUser("e1", {"accountEnabled": False}), frozenset({ROLE}))) == "disabled in Entra"
    assert "not assigned" in out_of_scope_reason(EntraUserState("e1", user, frozenset({DEFAULT_ACCESS})))
    assert "not assigned" in out_of_scope_reason(EntraUserState("e1", user, frozenset()))


def test_describe_has_ids_and_field_names_but_no_values():
    text = plan_user("e1", {**DESIRED, "LastName": "Secretname"}, sf_user(), None).describe()
    assert "LastName" in text and "005A" in text and "Secretname" not in text
