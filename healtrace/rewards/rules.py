"""Reward rules: what each rewarded activity pays, how often, and what it is called.

The bundled rules are ``healtrace/rewards/data/rules.yaml``; ``HEALTRACE_REWARDS__RULES_PATH``
replaces them. Amounts are token units written as decimal strings (``"0.5"``) and become
18-decimal integers exactly; YAML numbers are refused, since ``0.1`` in YAML is a float.
A file that does not validate stops start-up with an error naming the rule and the field.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from healtrace.errors import ConfigurationError

__all__ = [
    "DECIMALS",
    "EVENT_TYPES",
    "EventType",
    "RewardRule",
    "RuleSet",
    "format_amount",
    "load_rules",
    "parse_amount",
]

#: HealthToken's decimals: one token is 10**18 of its smallest unit.
DECIMALS = 18
_UNIT = 10**DECIMALS
#: No single award may exceed this many tokens (a typo guard, far above any sensible rule).
_MAX_AWARD_TOKENS = 1_000_000

#: The activities the engine knows how to check. Rules pick from these.
EventType = Literal[
    "daily_checkin",
    "questionnaire_completed",
    "blood_pressure_reading",
    "glucose_reading",
    "followup_completed",
    "data_contribution",
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)


def parse_amount(text: str) -> int:
    """``"1.5"`` → ``1500000000000000000``; exact, positive, at most 18 decimals."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation as exc:
        raise ValueError(f"{text!r} is not a decimal number") from exc
    if not value.is_finite() or value <= 0:
        raise ValueError(f"{text!r} must be a positive number of tokens")
    scaled = value.scaleb(DECIMALS)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{text!r} has more than {DECIMALS} decimal places")
    if value > _MAX_AWARD_TOKENS:
        raise ValueError(f"{text!r} is more than {_MAX_AWARD_TOKENS} tokens for one award")
    return int(scaled)


def format_amount(units: int) -> str:
    """``1500000000000000000`` → ``"1.5"`` (token units, no exponent, no trailing zeros)."""
    whole, frac = divmod(units, _UNIT)
    if not frac:
        return str(whole)
    return f"{whole}.{frac:0{DECIMALS}d}".rstrip("0")


class Titles(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    en: str = Field(min_length=1, max_length=100)
    zh: str = Field(alias="zh-CN", min_length=1, max_length=100)


class RewardRule(BaseModel):
    """One rewarded activity."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    event_type: EventType
    #: Token units as a decimal string in the file; 18-decimal integer here.
    amount: int
    #: Awards of this rule per calendar day (HEALTRACE_REWARDS__TIMEZONE); None: no limit.
    daily_cap: int | None = Field(default=None, ge=1)
    #: Awards of this rule per patient, ever; None: no limit.
    lifetime_cap: int | None = Field(default=None, ge=1)
    #: Least time between two awards of this rule to one patient (by the activity's time).
    cooldown_s: int = Field(default=0, ge=0)
    #: A streak rule pays once the activity was logged on this many consecutive days
    #: (counted afresh after each award); 0: every claim is judged on its own.
    streak_days: int = Field(default=0, ge=0, le=366)
    #: Whether the assistant may propose this claim (a data contribution needs a consent
    #: reference the model cannot vouch for, so it comes from the integrating system).
    tool_allowed: bool = True
    title: Titles

    @field_validator("amount", mode="before")
    @classmethod
    def _amount(cls, value: Any) -> int:
        if not isinstance(value, str):
            raise ValueError(
                'write the amount as a quoted decimal string such as "1.5" '
                "(a YAML number may be a float and lose precision)"
            )
        return parse_amount(value)

    def title_for(self, locale: str) -> str:
        return self.title.zh if locale.lower().startswith("zh") else self.title.en


class RuleSet(Mapping[str, RewardRule]):
    """Rules by event type (one rule per type), validated."""

    def __init__(self, rules: list[RewardRule], source: str = "") -> None:
        self.source = source
        self._by_type: dict[str, RewardRule] = {}
        ids: set[str] = set()
        for rule in rules:
            if rule.id in ids:
                raise ConfigurationError(f"{source}: rule id {rule.id!r} is used twice")
            ids.add(rule.id)
            if rule.event_type in self._by_type:
                other = self._by_type[rule.event_type].id
                raise ConfigurationError(
                    f"{source}: rules {other!r} and {rule.id!r} both reward "
                    f"{rule.event_type!r}; keep one rule per event type"
                )
            self._by_type[rule.event_type] = rule

    def __getitem__(self, event_type: str) -> RewardRule:
        return self._by_type[event_type]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_type)

    def __len__(self) -> int:
        return len(self._by_type)

    def by_id(self, rule_id: str) -> RewardRule | None:
        return next((r for r in self._by_type.values() if r.id == rule_id), None)


def _rule_error(source: str, index: int, raw: Any, exc: ValidationError) -> ConfigurationError:
    rule_id = raw.get("id") if isinstance(raw, dict) else None
    name = f"rule {rule_id!r}" if rule_id else f"rule #{index + 1}"
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'rule'}: {e['msg']}"
        for e in exc.errors(include_url=False)
    )
    return ConfigurationError(
        f"{source}: {name} is invalid: {problems} (fix the file or HEALTRACE_REWARDS__RULES_PATH)"
    )


def parse_rules(text: str, source: str = "rules.yaml") -> RuleSet:
    """Validate a rules document; ConfigurationError names the rule and what is wrong."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{source} is not valid YAML: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
        raise ConfigurationError(f"{source} must be a mapping with a 'rules' list")
    unknown = set(doc) - {"version", "rules"}
    if unknown:
        raise ConfigurationError(f"{source}: unknown top-level keys {sorted(unknown)}")
    if doc.get("version", 1) != 1:
        raise ConfigurationError(f"{source}: version {doc.get('version')!r} is not supported (1)")
    rules: list[RewardRule] = []
    for index, raw in enumerate(doc["rules"]):
        try:
            rules.append(RewardRule.model_validate(raw))
        except ValidationError as exc:
            raise _rule_error(source, index, raw, exc) from exc
    if not rules:
        raise ConfigurationError(f"{source} has no rules")
    return RuleSet(rules, source)


def load_rules(path: str | Path = "") -> RuleSet:
    """The rules at ``path``, or the bundled ones when ``path`` is empty."""
    if not path:
        bundled = resources.files("healtrace.rewards").joinpath("data", "rules.yaml")
        return parse_rules(bundled.read_text(encoding="utf-8"), "bundled rules.yaml")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(
            f"HEALTRACE_REWARDS__RULES_PATH: cannot read {path} ({exc.strerror})"
        ) from exc
    return parse_rules(text, str(path))
