"""Propose a health-behaviour reward for the signed-in patient (the rewards part).

The model only *proposes*: it names the activity and, for readings, the values the patient
gave. It cannot choose the patient, the amount or the recipient — the rule engine decides
and the tool reports the decision. The service is ``ctx.stores["rewards"]``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from healtrace.errors import localized
from healtrace.rewards import RewardConflict, RewardEvent, RewardInputError, RewardsService
from healtrace.tools.core import ToolContext, ToolRetry, tool

__all__ = ["RewardDecision", "reward"]

#: What the assistant may propose. Data contributions need a consent reference the model
#: cannot vouch for; they come from the integrating system over REST.
Activity = Literal[
    "daily_checkin",
    "questionnaire_completed",
    "blood_pressure_reading",
    "glucose_reading",
    "followup_completed",
]


class RewardDecision(BaseModel):
    """What the rule engine decided, for the model to tell the patient."""

    status: Literal["awarded", "denied", "recorded"]
    reason: str
    message: str
    title: str
    #: HEAL tokens paid by this claim ("0" unless awarded).
    amount: str
    #: The same proposal was decided before; nothing more was paid.
    replayed: bool


def _payload(activity: Activity, **given: Any) -> dict[str, Any]:
    wanted = {
        "daily_checkin": (),
        "questionnaire_completed": ("questionnaire_id",),
        "blood_pressure_reading": ("systolic_mmhg", "diastolic_mmhg", "pulse_bpm"),
        "glucose_reading": ("value", "unit"),
        "followup_completed": ("followup_id",),
    }[activity]
    return {k: given[k] for k in wanted if given.get(k) is not None}


@tool(timeout_s=10.0, permissions=("rewards",))
async def reward(
    ctx: ToolContext,
    activity: Activity,
    systolic_mmhg: Annotated[float | None, Field(ge=0, le=1000)] = None,
    diastolic_mmhg: Annotated[float | None, Field(ge=0, le=1000)] = None,
    pulse_bpm: Annotated[float | None, Field(ge=0, le=1000)] = None,
    glucose: Annotated[float | None, Field(ge=0, le=5000)] = None,
    glucose_unit: Literal["mmol/L", "mg/dL"] = "mmol/L",
    questionnaire_id: Annotated[str | None, Field(max_length=64)] = None,
    followup_id: Annotated[str | None, Field(max_length=64)] = None,
) -> RewardDecision:
    """Propose a health-behaviour reward for the signed-in patient; the reward rules decide
    whether it pays and how much. Use when the patient checks in for the day, reports a
    blood-pressure or blood-glucose reading they just took, or says they finished a health
    questionnaire or a follow-up. Tell the patient the returned message as it is.

    Args:
        activity: What the patient did.
        systolic_mmhg: Blood-pressure readings: the upper number, in mmHg.
        diastolic_mmhg: Blood-pressure readings: the lower number, in mmHg.
        pulse_bpm: Blood-pressure readings: the pulse, if the patient gave it.
        glucose: Glucose readings: the value the patient gave.
        glucose_unit: Glucose readings: mmol/L (usual in China) or mg/dL.
        questionnaire_id: Questionnaires: the questionnaire's id, if known.
        followup_id: Follow-ups: the follow-up's id, if known.
    """
    if not ctx.patient_id:
        raise ToolRetry(localized("reward_patient_required", ctx.locale))
    service: RewardsService | None = ctx.stores.get("rewards")
    if service is None:
        raise ToolRetry(localized("reward_disabled", ctx.locale))
    rule = service.rules.get(activity)
    if rule is None or not rule.tool_allowed:
        known = ", ".join(t for t, r in service.rules.items() if r.tool_allowed)
        raise ToolRetry(
            localized("reward_unknown_type", ctx.locale, event_type=activity, known=known)
        )
    payload = _payload(
        activity,
        systolic_mmhg=systolic_mmhg,
        diastolic_mmhg=diastolic_mmhg,
        pulse_bpm=pulse_bpm,
        value=glucose,
        unit=glucose_unit if glucose is not None else None,
        # Without an id, one questionnaire (or follow-up) per conversation can pay.
        questionnaire_id=questionnaire_id or f"chat:{ctx.session_id[:40]}",
        followup_id=followup_id or f"chat:{ctx.session_id[:40]}",
    )
    # Minute resolution, and an event id made of the proposal itself: the model repeating a
    # call within a turn gets the first decision back instead of a second award.
    occurred = service.engine.clock().replace(second=0, microsecond=0)
    key = json.dumps(
        [ctx.session_id, activity, payload, occurred.isoformat()],
        sort_keys=True,
        separators=(",", ":"),
    )
    event_id = "tool:" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]
    try:
        result = await service.claim(
            RewardEvent(
                event_id=event_id,
                tenant_id=ctx.tenant_id or "default",
                patient_id=ctx.patient_id,
                type=activity,
                occurred_at=occurred,
                payload=payload,
            )
        )
    except (RewardInputError, RewardConflict) as exc:
        raise ToolRetry(exc.message(ctx.locale)) from exc
    return RewardDecision(
        status=result.status,
        reason=result.reason,
        message=result.message(ctx.locale),
        title=result.title(ctx.locale),
        amount=result.to_json(ctx.locale)["amount"],
        replayed=result.replayed,
    )
