import pytest

from shared.core.errors import ConfigurationError, PermanentError
from shared.core.mapping import MappingInput
from shared.core.mapping_config import parse_mapping
from shared.core.models import EntraUser
from shared.core.planning import Operation
from shared.core.unique_values import UniqueValueLedger, with_picks

MAPPING = parse_mapping('''
    [fields.Username]
    type = "Direct"
    source = "userPrincipalName"
    matching_priority = 1
    [fields.Alias]
    type = "Expression"
    apply = "on-create"
    expression = 'SelectUniqueValue(ToLower([surname]), Append(ToLower([surname]), "1"), Append(ToLower([surname]), "2"))'
    [fields.CommunityNickname]
    type = "Expression"
    apply = "on-create"
    expression = 'SelectUniqueValue([givenName], Append([givenName], "2"))'
    default = "nobody"
''')


def source(surname, given=None):
    return MappingInput(EntraUser(surname, {"userPrincipalName": f"{surname}@x.com", "surname": surname,
                                            "givenName": given}), ())


def settle(ledger, sources, org_has):
    """Run rounds against a pretend org holding `org_has` (field → values), as the service does."""
    asked = []
    while True:
        picks, unknown = ledger.pick(sources)
        if not unknown:
            return picks, asked
        asked.append(unknown)
        ledger.learn(unknown, {f: {v for v in vs if v.casefold() in {h.casefold() for h in org_has.get(f, ())}}
                               for f, vs in unknown.items()})


def test_first_round_asks_only_for_the_values_it_would_pick_and_batch_collisions_move_on():
    ledger = UniqueValueLedger(MAPPING)
    picks, asked = settle(ledger, [source("Smith", "Ann"), source("SMITH", "Bob"), source("Jones", "Ann")], {})
    assert asked == [{"Alias": {"smith", "smith1", "jones"}, "CommunityNickname": {"Ann", "Bob", "Ann2"}}]
    assert picks == [{"Alias": "smith", "CommunityNickname": "Ann"},
                     {"Alias": "smith1", "CommunityNickname": "Bob"},
                     {"Alias": "jones", "CommunityNickname": "Ann2"}]


def test_a_candidate_taken_in_the_org_costs_one_more_round_and_compares_case_insensitively():
    ledger = UniqueValueLedger(MAPPING)
    picks, asked = settle(ledger, [source("Smith", "Ann"), source("Smith", "Bob")], {"Alias": {"SMITH1"}})
    assert len(asked) == 2 and asked[1] == {"Alias": {"smith2"}}
    assert [p["Alias"] for p in picks] == ["smith", "smith2"]


def test_a_crowded_name_asks_about_all_its_remaining_candidates_at_once():
    ledger = UniqueValueLedger(MAPPING)
    picks, asked = settle(ledger, [source("Smith", "Ann")], {"Alias": {"smith", "smith1"}})
    assert [a.get("Alias") for a in asked] == [{"smith"}, {"smith1", "smith2"}]
    assert picks[0]["Alias"] == "smith2"


def test_values_known_taken_from_earlier_batches_are_skipped_without_asking():
    ledger = UniqueValueLedger(MAPPING, {"Alias": ["SMITH"], "CommunityNickname": []})
    picks, asked = settle(ledger, [source("Smith", "Ann")], {})
    assert asked == [{"Alias": {"smith1"}, "CommunityNickname": {"Ann"}}]
    assert picks[0]["Alias"] == "smith1"


def test_every_candidate_taken_is_a_permanent_error_naming_the_field_for_that_user_only():
    ledger = UniqueValueLedger(MAPPING)
    picks, _ = settle(ledger, [source("Smith", "Ann"), source("Lee", "Bo")], {"Alias": {"smith", "smith1", "smith2"}})
    assert isinstance(picks[0], PermanentError)
    assert picks[0].code == "NoUniqueValue" and picks[0].fields == ("Alias",) and "Alias" in picks[0].message
    assert picks[1] == {"Alias": "lee", "CommunityNickname": "Bo"}


def test_no_candidate_at_all_takes_the_default_and_asks_nothing():
    ledger = UniqueValueLedger(MAPPING)
    picks, asked = settle(ledger, [MappingInput(EntraUser("e", {"surname": "Wu"}), ())], {})
    assert picks == [{"Alias": "wu", "CommunityNickname": "nobody"}]
    assert asked == [{"Alias": {"wu"}}]


def test_with_picks_sets_the_record_and_the_changes_of_a_create():
    op = Operation("create", "e1", None, {"Alias": (None, "smith"), "LastName": (None, "Smith")},
                   {"Alias": "smith", "LastName": "Smith", "IsActive": True})
    created = with_picks(op, {"Alias": "smith2"})
    assert created.record == {"Alias": "smith2", "LastName": "Smith", "IsActive": True}
    assert created.changes["Alias"] == (None, "smith2") and created.changes["LastName"] == (None, "Smith")
    assert with_picks(op, {}) is op


@pytest.mark.parametrize("apply", ['apply = "always"', ""])
def test_select_unique_value_must_apply_on_create_only(apply):
    with pytest.raises(ConfigurationError) as err:
        parse_mapping(f'''
            [fields.Username]
            type = "Direct"
            source = "userPrincipalName"
            matching_priority = 1
            [fields.Alias]
            type = "Expression"
            expression = 'SelectUniqueValue([surname], [givenName])'
            {apply}
        ''')
    assert 'fields.Alias: SelectUniqueValue picks a value when the user is created: set apply = "on-create"' in str(err.value)


def test_a_nickname_clash_after_the_check_is_retried_only_when_the_nickname_was_picked_unique():
    from shared.core.errors import TransientError, salesforce_error
    from shared.services.unique_values import clash_is_transient

    clash = salesforce_error(400, "DUPLICATE_COMM_NICKNAME", "Duplicate Nickname.", ["CommunityNickname"])
    retried = clash_is_transient(clash, MAPPING)
    assert isinstance(retried, TransientError) and retried.code == "DUPLICATE_COMM_NICKNAME"
    assert retried.fields == ("CommunityNickname",)
    fixed = parse_mapping('[fields.Username]\ntype = "Direct"\nsource = "userPrincipalName"\nmatching_priority = 1\n'
                          '[fields.CommunityNickname]\ntype = "Direct"\nsource = "mailNickname"\n')
    assert clash_is_transient(clash, fixed) is clash  # a fixed nickname cannot become free by retrying
    other = salesforce_error(400, "DUPLICATE_USERNAME", "Duplicate Username.", ["Username"])
    assert clash_is_transient(other, MAPPING) is other
