"""What a claim's payload must hold per event type, and the checks that need no ledger.

Malformed payloads (missing or mistyped fields) are refused outright with
:class:`RewardInputError`; readings that are well-formed but physiologically impossible are
*denied* (``reward_impossible_value``) and recorded, like every other judged claim.
The duplicate check needs a fingerprint: the type, the normalised values and the
activity's time for readings, the questionnaire or follow-up id for completions.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from healtrace.rewards.errors import RewardInputError
from healtrace.rewards.rules import EventType

__all__ = ["CheckedPayload", "check_payload"]

#: mg/dL per mmol/L of glucose (molar mass 180.16 g/mol).
MG_DL_PER_MMOL_L = 18.016

_Id = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:/-]+$")


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CheckinPayload(_Payload):
    pass


class QuestionnairePayload(_Payload):
    questionnaire_id: str = _Id


class BloodPressurePayload(_Payload):
    systolic_mmhg: float = Field(allow_inf_nan=False)
    diastolic_mmhg: float = Field(allow_inf_nan=False)
    pulse_bpm: float | None = Field(default=None, allow_inf_nan=False)


class GlucosePayload(_Payload):
    value: float = Field(allow_inf_nan=False)
    unit: Literal["mmol/L", "mg/dL"] = "mmol/L"
    timing: Literal["fasting", "before_meal", "after_meal", "bedtime", "random"] | None = None


class FollowupPayload(_Payload):
    followup_id: str = _Id


class ContributionPayload(_Payload):
    dataset: str = _Id
    #: The consent the patient gave for this contribution (e.g. a ConsentRegistry grant id).
    consent_ref: str | None = Field(default=None, max_length=200)


_MODELS: dict[str, type[_Payload]] = {
    "daily_checkin": CheckinPayload,
    "questionnaire_completed": QuestionnairePayload,
    "blood_pressure_reading": BloodPressurePayload,
    "glucose_reading": GlucosePayload,
    "followup_completed": FollowupPayload,
    "data_contribution": ContributionPayload,
}
READING_TYPES = frozenset({"blood_pressure_reading", "glucose_reading"})


@dataclass(frozen=True, slots=True)
class CheckedPayload:
    """A payload that parsed; ``denial`` is set when a no-ledger check already failed."""

    payload: dict[str, Any]
    #: Identifies "the same submission" for the duplicate check; None: no such check.
    fingerprint: str | None
    denial: str | None = None
    detail: str = ""


def _fingerprint(event_type: str, key: Any) -> str:
    text = json.dumps([event_type, key], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _impossible(event_type: str, p: _Payload) -> str:
    """Why the reading cannot be physiological, or an empty string."""
    if isinstance(p, BloodPressurePayload):
        if not 50 <= p.systolic_mmhg <= 300:
            return f"systolic {p.systolic_mmhg:g} mmHg is outside 50-300"
        if not 20 <= p.diastolic_mmhg <= 200:
            return f"diastolic {p.diastolic_mmhg:g} mmHg is outside 20-200"
        if p.diastolic_mmhg >= p.systolic_mmhg:
            return "diastolic must be lower than systolic"
        if p.pulse_bpm is not None and not 20 <= p.pulse_bpm <= 250:
            return f"pulse {p.pulse_bpm:g}/min is outside 20-250"
    if isinstance(p, GlucosePayload):
        mmol = p.value if p.unit == "mmol/L" else p.value / MG_DL_PER_MMOL_L
        if not 0.5 <= mmol <= 50:
            return f"glucose {p.value:g} {p.unit} is outside 0.5-50 mmol/L"
    return ""


def check_payload(
    event_type: EventType, raw: dict[str, Any], occurred_at: datetime
) -> CheckedPayload:
    """Parse ``raw`` for ``event_type`` and run the checks that need no ledger."""
    try:
        parsed = _MODELS[event_type].model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"payload.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise RewardInputError(problems, code="reward_invalid_event") from exc
    payload = parsed.model_dump(exclude_none=True)
    why = _impossible(event_type, parsed)
    if why:
        return CheckedPayload(payload, None, "reward_impossible_value", why)
    if isinstance(parsed, ContributionPayload) and not (parsed.consent_ref or "").strip():
        return CheckedPayload(payload, None, "reward_consent_required")
    fingerprint: str | None = None
    if event_type in READING_TYPES:
        at = occurred_at.astimezone(UTC).isoformat()
        fingerprint = _fingerprint(event_type, [payload, at])
    elif isinstance(parsed, QuestionnairePayload):
        fingerprint = _fingerprint(event_type, parsed.questionnaire_id)
    elif isinstance(parsed, FollowupPayload):
        fingerprint = _fingerprint(event_type, parsed.followup_id)
    return CheckedPayload(payload, fingerprint)
