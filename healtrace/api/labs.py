"""REST: ``POST /v1/labs/interpret`` — pasted text or FHIR in, a structured report out."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from healtrace.api._http import KeyId, request_locale
from healtrace.labs.service import MAX_TEXT_CHARS, interpret_input

router = APIRouter(tags=["labs"])


class LabsIn(BaseModel):
    #: Results as a patient pastes them (Chinese or English lines, portal tables).
    text: str | None = Field(default=None, max_length=MAX_TEXT_CHARS)
    #: A FHIR R4 Observation, a list of them, or a Bundle.
    fhir: dict[str, Any] | list[Any] | None = None
    sex: Literal["M", "F"] | None = None
    age: float | None = Field(default=None, ge=0, le=130)
    weight_kg: float | None = Field(default=None, gt=0, le=700)
    height_cm: float | None = Field(default=None, gt=0, le=300)
    locale: Literal["en", "zh-CN"] | None = None


@router.post("/v1/labs/interpret")
async def interpret_labs(request: Request, _key: KeyId, body: LabsIn) -> dict[str, Any]:
    """Flags, reference ranges, derived values (eGFR, anion gap …), patterns and warnings.

    Possibilities and next steps, never diagnoses. ``urgent`` is true when a value is at
    a level labs treat as critical."""
    locale = body.locale or request_locale(request)
    report, out = await asyncio.to_thread(
        interpret_input,
        text=body.text,
        fhir=body.fhir,
        sex=body.sex,
        age=body.age,
        weight_kg=body.weight_kg,
        height_cm=body.height_cm,
        locale=locale,
    )
    out["urgent"] = report.urgent
    return out
