"""REST: ``POST /v1/labs/interpret`` — pasted text, a report photo or FHIR in, a structured
report out."""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from healtrace.api._http import KEY_ERRORS, KeyId, error_responses, request_locale
from healtrace.errors import InputError
from healtrace.labs.service import MAX_TEXT_CHARS, interpret_input

router = APIRouter(tags=["labs"])


class LabsIn(BaseModel):
    #: Results as a patient pastes them (Chinese or English lines, portal tables).
    text: str | None = Field(default=None, max_length=MAX_TEXT_CHARS)
    #: A FHIR R4 Observation, a list of them, or a Bundle.
    fhir: dict[str, Any] | list[Any] | None = None
    #: A photo of a printed report (JPEG, PNG, WebP), base64-encoded, up to 10 MiB.
    image_base64: str | None = Field(default=None, max_length=14_000_000)
    sex: Literal["M", "F"] | None = None
    age: float | None = Field(default=None, ge=0, le=130)
    weight_kg: float | None = Field(default=None, gt=0, le=700)
    height_cm: float | None = Field(default=None, gt=0, le=300)
    locale: Literal["en", "zh-CN"] | None = None


@router.post("/v1/labs/interpret", responses=error_responses(*KEY_ERRORS, 400, 413, 415))
async def interpret_labs(request: Request, _key: KeyId, body: LabsIn) -> dict[str, Any]:
    """Flags, reference ranges, derived values (eGFR, anion gap …), patterns and warnings.

    Possibilities and next steps, never diagnoses. ``urgent`` is true when a value is at
    a level labs treat as critical."""
    locale = body.locale or request_locale(request)
    image = None
    if body.image_base64 is not None:
        try:
            image = base64.b64decode(body.image_base64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InputError("bad base64", code="labs_not_an_image") from exc
    report, out = await asyncio.to_thread(
        interpret_input,
        text=body.text,
        fhir=body.fhir,
        image=image,
        sex=body.sex,
        age=body.age,
        weight_kg=body.weight_kg,
        height_cm=body.height_cm,
        locale=locale,
    )
    out["urgent"] = report.urgent
    return out
