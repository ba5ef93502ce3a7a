"""COORDINATOR_LEASES and COORDINATOR_LEASE_SELECTOR: what they expand to, and that every bad
value is refused with a message naming the setting (pure: no Redis, no environment)."""

from __future__ import annotations

import pytest

from coordinator.errors import InvalidArgumentError
from coordinator.leases.names import (
    ALL_LEASES,
    MAX_LEASES,
    LeaseSelector,
    parse_lease_names,
    parse_lease_selector,
)
from coordinator.protocol import keys
from coordinator.settings import SettingsError


def test_unset_means_no_leases() -> None:
    assert parse_lease_names("") == ()
    assert parse_lease_names("   ") == ()


def test_plain_names_keep_their_order_and_lose_surrounding_spaces() -> None:
    assert parse_lease_names("orders, billing ,global") == ("orders", "billing", "global")


def test_a_range_expands_in_place() -> None:
    names = parse_lease_names("first,shard-{0..63},last")
    assert names[0] == "first" and names[-1] == "last"
    assert names[1:-1] == tuple(f"shard-{i}" for i in range(64))


def test_a_range_can_sit_inside_a_name() -> None:
    assert parse_lease_names("eu-{1..3}.jobs") == ("eu-1.jobs", "eu-2.jobs", "eu-3.jobs")


def test_a_leading_zero_pads_to_the_wider_endpoint() -> None:
    assert parse_lease_names("s{00..11}") == tuple(f"s{i:02d}" for i in range(12))
    assert parse_lease_names("s{08..100}")[:3] == ("s008", "s009", "s010")
    assert parse_lease_names("s{0..10}")[:2] == ("s0", "s1")  # "0" alone is no padding


def test_a_range_of_one_is_one_name() -> None:
    assert parse_lease_names("s{7..7}") == ("s7",)


@pytest.mark.parametrize(("value", "rule"), [
    ("a,,b", "empty name between commas"),
    ("a,", "empty name between commas"),
    ("a,a", "'a' is listed twice"),
    ("s-{0..9},s-3", "'s-3' is listed twice"),
    ("s{3..1}", "must count up"),
    ("s{0..1}-{0..1}", "more than one"),
    ("s{a,b}", "a brace must be a range"),
    ("s{0..}", "a brace must be a range"),
    ("s{0..1}}", "a brace must be a range"),
    ("s{0..4096}", f"more than {MAX_LEASES} leases"),
    ("s{0..999999999999}", f"more than {MAX_LEASES} leases"),
    ("s{0..\u0663}", "a brace must be a range"),  # an Arabic-Indic digit is no decimal here
    ("bad name", "must be 1-64 characters"),
    ("-leading-dash", "must be 1-64 characters"),
    ("x" * 65, "must be 1-64 characters"),
    ("x" * 63 + "{8..10}", "must be 1-64 characters"),  # only the widest name is too long
])
def test_bad_values_are_refused_naming_the_setting(value: str, rule: str) -> None:
    with pytest.raises(SettingsError) as caught:
        parse_lease_names(value)
    message = str(caught.value)
    assert message.startswith("invalid settings: COORDINATOR_LEASES: ")
    assert rule in message
    assert repr(value) in message


def test_the_count_limit_is_exactly_max_leases() -> None:
    assert len(parse_lease_names(f"s{{1..{MAX_LEASES}}}")) == MAX_LEASES
    with pytest.raises(SettingsError, match="more than"):
        parse_lease_names(f"s{{1..{MAX_LEASES}}},one-more")
    with pytest.raises(SettingsError, match="more than"):
        parse_lease_names(f"a{{1..{MAX_LEASES // 2}}},b{{0..{MAX_LEASES // 2}}}")


def test_the_name_rule_is_the_one_lease_names_follow_today() -> None:
    # every name COORDINATOR_LEASES accepts is one keys.lease_key accepts, and vice versa
    for name in ["a", "A.b_c-d", "9lives", "x" * 64, "bad name", "_x", "x" * 65, "é"]:
        try:
            keys.check_name("lease name", name)
            today_ok = True
        except InvalidArgumentError:
            today_ok = False
        try:
            parse_lease_names(name)
            here_ok = True
        except SettingsError:
            here_ok = False
        assert here_ok == today_ok, name


def test_a_settings_error_is_an_invalid_argument() -> None:
    with pytest.raises(InvalidArgumentError):
        parse_lease_names("a,a")


def test_an_unset_selector_takes_every_lease() -> None:
    assert parse_lease_selector("") is ALL_LEASES
    assert ALL_LEASES.matches("anything")


def test_a_prefix_glob_selects_by_prefix() -> None:
    selector = parse_lease_selector("eu-*")
    assert selector.matches("eu-1") and selector.matches("eu-")
    assert not selector.matches("us-1") and not selector.matches("xeu-1")


def test_question_mark_is_one_character_and_matching_is_whole_name() -> None:
    selector = parse_lease_selector("shard-?")
    assert selector.matches("shard-7")
    assert not selector.matches("shard-17") and not selector.matches("shard-")


def test_any_pattern_may_match_and_case_counts() -> None:
    selector = parse_lease_selector("eu-*, us-east-?")
    assert selector.matches("eu-9") and selector.matches("us-east-1")
    assert not selector.matches("EU-9") and not selector.matches("us-west-1")


def test_a_selector_reads_back_as_it_was_written_without_duplicates() -> None:
    assert parse_lease_selector("eu-*, eu-*,us-*").text == "eu-*,us-*"
    assert LeaseSelector(("a*",)) == parse_lease_selector("a*")


def test_dots_in_a_pattern_are_literal() -> None:
    selector = parse_lease_selector("a.b")
    assert selector.matches("a.b") and not selector.matches("axb")


@pytest.mark.parametrize(("value", "rule"), [
    ("eu-*,", "empty pattern"),
    ("eu-[12]", "must be a lease name"),
    ("eu *", "must be a lease name"),
    ("-eu", "must be a lease name"),
    ("*" * 65, "must be a lease name"),
    (",".join(f"p{i}*" for i in range(65)), "more than 64 patterns"),
])
def test_bad_selectors_are_refused_naming_the_setting(value: str, rule: str) -> None:
    with pytest.raises(SettingsError) as caught:
        parse_lease_selector(value)
    assert str(caught.value).startswith("invalid settings: COORDINATOR_LEASE_SELECTOR: ")
    assert rule in str(caught.value)
