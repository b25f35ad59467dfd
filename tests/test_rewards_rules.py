"""Reward rules: the bundled file, exact amounts, and load-time errors that name the rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from healtrace.errors import ConfigurationError
from healtrace.rewards import EVENT_TYPES, format_amount, load_rules, parse_amount
from healtrace.rewards.rules import parse_rules

RULE = """
version: 1
rules:
  - id: {id}
    event_type: {event_type}
    amount: {amount}
    daily_cap: 1
    title: {{en: "Check-in", zh-CN: "签到"}}
"""


def _doc(id: str = "checkin", event_type: str = "daily_checkin", amount: str = '"1"') -> str:
    return RULE.format(id=id, event_type=event_type, amount=amount)


def test_bundled_rules_cover_every_event_type_with_exact_amounts() -> None:
    rules = load_rules()
    assert set(rules) == set(EVENT_TYPES)
    assert rules["daily_checkin"].amount == 10**18
    assert rules["blood_pressure_reading"].streak_days == 7
    assert rules["data_contribution"].tool_allowed is False
    assert rules["daily_checkin"].title_for("zh-CN") == "每日签到"
    assert rules.by_id("followup_completed") is rules["followup_completed"]


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("1", 10**18),
        ("0.1", 10**17),
        ("1.000000000000000001", 10**18 + 1),
        ("12.5", 125 * 10**17),
        (" 3 ", 3 * 10**18),
    ],
)
def test_amounts_are_exact(text: str, units: int) -> None:
    assert parse_amount(text) == units
    assert parse_amount(format_amount(units)) == units


@pytest.mark.parametrize("text", ["0", "-1", "abc", "0.0000000000000000001", "NaN", "1e7"])
def test_bad_amounts_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_amount(text)


def test_format_amount() -> None:
    assert format_amount(0) == "0"
    assert format_amount(15 * 10**17) == "1.5"
    assert format_amount(1) == "0.000000000000000001"


def test_a_yaml_number_amount_names_the_rule() -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_rules(_doc(id="morning_checkin", amount="0.1"))
    text = str(info.value)
    assert "'morning_checkin'" in text and "amount" in text and "quoted decimal string" in text


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (_doc(event_type="jogging"), "'checkin'"),
        (_doc(amount='"0.0000000000000000001"'), "more than 18 decimal places"),
        (_doc(id="Bad Id"), "rule 'Bad Id'"),
        (_doc() + "    surprise: 1\n", "surprise"),
        ("rules: []", "has no rules"),
        ("rules: {}", "'rules' list"),
        ("version: 2\nrules: []", "version 2"),
        ("rules: [\n", "not valid YAML"),
    ],
)
def test_invalid_rules_are_explained(doc: str, expected: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_rules(doc)
    assert expected in str(info.value)


def test_one_rule_per_id_and_per_type() -> None:
    twice = _doc() + _doc().split("rules:\n", 1)[1]
    with pytest.raises(ConfigurationError, match="used twice"):
        parse_rules(twice)
    other = _doc() + _doc(id="checkin_again").split("rules:\n", 1)[1]
    with pytest.raises(ConfigurationError, match="both reward 'daily_checkin'"):
        parse_rules(other)


def test_rules_path_is_read_and_a_missing_file_names_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(_doc(amount='"2.5"'), encoding="utf-8")
    assert load_rules(path)["daily_checkin"].amount == 25 * 10**17
    with pytest.raises(ConfigurationError, match="HEALTRACE_REWARDS__RULES_PATH"):
        load_rules(tmp_path / "missing.yaml")
