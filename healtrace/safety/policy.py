"""The safety policy a turn runs under, assembled from settings.

Triage rules run on every message before the model; an optional model second opinion can
only raise the level; answers pass through the output guard. Nothing here reads what the
model wrote to decide whether the safety steps apply.
"""

from __future__ import annotations

from typing import Any

from healtrace.agent.models.base import ModelBackend
from healtrace.config import SafetyConfig
from healtrace.errors import localized
from healtrace.safety.output import OutputGuard
from healtrace.safety.second_opinion import SecondOpinion
from healtrace.safety.triage import Triager, default_triager
from healtrace.safety.types import Level, TriageResult

#: What the patient is told for each level (en, zh); ``{number}`` is the emergency number.
ADVICE: dict[str, tuple[str, str]] = {
    "emergency": (
        "This may be an emergency. Call {number} now or go to the nearest emergency "
        "department. Do not wait for an answer here.",
        "这可能是急症。请立即拨打 {number} 或尽快前往最近的急诊，不要等待线上回复。",
    ),
    "urgent": (
        "Please see a doctor today (a same-day appointment or urgent care). If it gets worse, "
        "call {number}.",
        "请今天就医（当日门诊或急诊）。如果情况加重，请拨打 {number}。",
    ),
}


class SafetyPolicy:
    def __init__(
        self,
        config: SafetyConfig,
        *,
        triager: Triager | None = None,
        second_opinion: SecondOpinion | None = None,
    ) -> None:
        self.config = config
        # Compiling the lexicon takes about a second: share the one process-wide triager.
        self.triager = triager or default_triager()
        self.second_opinion = second_opinion

    @classmethod
    def from_settings(cls, config: SafetyConfig, model: ModelBackend | None) -> SafetyPolicy:
        opinion = None
        if config.second_opinion and model is not None:
            opinion = SecondOpinion(model, timeout_s=config.second_opinion_timeout_s)
        return cls(config, second_opinion=opinion)

    def region_for(self, tenant_id: str | None) -> str | None:
        if tenant_id and tenant_id in self.config.tenant_regions:
            return self.config.tenant_regions[tenant_id]
        return self.config.region or None

    def assess(self, text: str, locale: str, tenant_id: str | None = None) -> TriageResult:
        """The rules' verdict (microseconds; runs before anything else of the turn)."""
        return self.triager.assess(text, locale, region=self.region_for(tenant_id))

    async def review(self, text: str, locale: str, rules: TriageResult) -> TriageResult:
        """The model's second opinion, if configured; never lower than ``rules``."""
        if self.second_opinion is None:
            return rules
        return await self.second_opinion.review(text, locale, rules)

    def wants_handoff(self, result: TriageResult) -> bool:
        if self.config.handoff_level == "never":
            return False
        return result.level.at_least(Level(self.config.handoff_level))

    def guard(self, locale: str, *, knowledge_used: bool, level: Level) -> OutputGuard | None:
        if not self.config.output_checks:
            return None
        return OutputGuard(locale=locale, knowledge_used=knowledge_used, triage_level=level)


def advice(result: TriageResult, locale: str) -> str:
    """The sentence the patient sees with a red flag ("" below urgent)."""
    if result.level.value not in ADVICE:
        return ""
    return localized(result.level.value, locale, catalogue=ADVICE, number=result.emergency_number)


def stored_triage(result: TriageResult, locale: str) -> dict[str, Any]:
    """Triage as kept with the message and the handoff (codes and levels; the evidence
    is the patient's own words and stays with their message)."""
    return result.to_dict(locale)
