"""The vocabulary every safety part shares: urgency levels, reasons and a triage result.

Levels are ordered; combining results only ever keeps the more urgent one, so a later
opinion (a model's, a lab value's) can raise urgency but never lower it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Level(StrEnum):
    """How soon the patient needs care, most urgent first."""

    #: Call the local emergency number now.
    EMERGENCY = "emergency"
    #: See a clinician today (urgent care, same-day appointment), not an ambulance.
    URGENT = "urgent"
    #: Book an ordinary appointment.
    ROUTINE = "routine"
    #: Manage at home or with a pharmacist; information only.
    SELF_CARE = "self-care"

    @property
    def rank(self) -> int:
        """Higher is more urgent."""
        return _RANK[self]

    def at_least(self, other: Level) -> bool:
        return self.rank >= other.rank


_RANK = {Level.SELF_CARE: 0, Level.ROUTINE: 1, Level.URGENT: 2, Level.EMERGENCY: 3}


def max_level(*levels: Level) -> Level:
    return max(levels, key=lambda lv: lv.rank)


@dataclass(frozen=True, slots=True)
class Reason:
    """One finding that set the level."""

    #: Red-flag category (``chest_pain``, ``stroke``, ... see ``CATEGORIES``).
    category: str
    #: Stable code of the rule that fired, e.g. ``chest_pain.with_sweating``.
    code: str
    level: Level
    #: The words in the patient's text that matched (already in the patient's language).
    evidence: str = ""
    #: Where the finding came from: ``rules``, ``model`` or ``labs``.
    source: str = "rules"
    #: Explanations in English and Chinese, shown to the patient and the clinician.
    message_en: str = ""
    message_zh: str = ""

    def message(self, locale: str) -> str:
        return self.message_zh if locale.lower().startswith("zh") else self.message_en

    def to_dict(self, locale: str) -> dict[str, Any]:
        return {
            "category": self.category,
            "code": self.code,
            "level": self.level.value,
            "evidence": self.evidence,
            "source": self.source,
            "message": self.message(locale),
        }


#: The red-flag categories triage knows.
CATEGORIES: tuple[str, ...] = (
    "chest_pain",
    "stroke",
    "breathing",
    "anaphylaxis",
    "bleeding",
    "self_harm",
    "overdose_poisoning",
    "allergy",
    "pregnancy",
    "infant_fever",
    "sepsis",
    "critical_lab",
    # Further emergencies triage recognises beyond the twelve above.
    "seizure",
    "unconscious",
    "trauma",
    "burn",
)


@dataclass(frozen=True, slots=True)
class TriageResult:
    level: Level
    reasons: tuple[Reason, ...] = ()
    #: The number to call in an emergency where the patient is (``120``, ``911``, ``999`` ...).
    emergency_number: str = "120"
    region: str = "CN"
    #: Set when the patient asked for a person ("转人工", "talk to a nurse").
    wants_human: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_red_flag(self) -> bool:
        return self.level.at_least(Level.URGENT)

    def raised(self, reasons: tuple[Reason, ...] | list[Reason]) -> TriageResult:
        """This result with more reasons; the level only goes up."""
        if not reasons:
            return self
        level = max_level(self.level, *(r.level for r in reasons))
        return TriageResult(
            level=level,
            reasons=self.reasons + tuple(reasons),
            emergency_number=self.emergency_number,
            region=self.region,
            wants_human=self.wants_human,
            extra=self.extra,
        )

    def to_dict(self, locale: str) -> dict[str, Any]:
        return {
            "level": self.level.value,
            "reasons": [r.to_dict(locale) for r in self.reasons],
            "emergency_number": self.emergency_number,
            "region": self.region,
            "wants_human": self.wants_human,
        }
