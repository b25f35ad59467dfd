"""REST: health-behaviour rewards — claim, balance, history (``/v1/rewards/*``).

The caller's API key decides the tenant; a key issued for a patient acts only for that
patient (``patient_id`` may then be left out), any other key names the patient. The
:class:`~healtrace.rewards.RewardsService` is ``app.state.rewards``.

A judged claim answers 200 with its decision, denials included; a claim that cannot be
judged answers 4xx with ``{"error": {"code", "message"}}`` in the caller's language.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from healtrace.api._http import (
    KEY_ERRORS,
    KeyId,
    body_schema,
    error_response,
    error_responses,
    request_locale,
    services_of,
)
from healtrace.errors import HealTraceError
from healtrace.rewards import RewardEvent, RewardInputError, RewardsService, format_amount
from healtrace.rewards.errors import RewardConflict

__all__ = ["STATUS_FOR_REWARD_CODE", "ClaimIn", "router"]

router = APIRouter(tags=["rewards"])

#: HTTP status of each code this router answers with (the shared table does not know them).
STATUS_FOR_REWARD_CODE = {
    "reward_unknown_type": 422,
    "reward_invalid_event": 422,
    "reward_event_time_invalid": 422,
    "reward_patient_required": 422,
    "reward_event_conflict": 409,
    "reward_claim_too_large": 413,
    "reward_patient_forbidden": 403,
    "reward_disabled": 503,
}


class ClaimIn(BaseModel):
    """``POST /v1/rewards/events``: the activity, never an amount or a recipient."""

    model_config = ConfigDict(extra="forbid")

    #: Chosen by the client, unique per activity; resend the same id after a time-out.
    event_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")
    #: Required unless the API key was issued for a patient.
    patient_id: str | None = Field(default=None, min_length=1, max_length=64)
    type: str = Field(min_length=1, max_length=64)
    occurred_at: AwareDatetime
    payload: dict[str, Any] = Field(default_factory=dict)


def _service(request: Request) -> RewardsService:
    service: RewardsService | None = getattr(request.app.state, "rewards", None)
    if service is None:
        raise RewardInputError("no rewards service", code="reward_disabled")
    return service


def _error(exc: HealTraceError, locale: str) -> JSONResponse:
    return error_response(
        exc.code,
        locale,
        status=STATUS_FOR_REWARD_CODE.get(exc.code, 400),
        message=exc.message(locale),
    )


async def _patient(request: Request, key_id: str, patient_id: str | None) -> tuple[str, str]:
    store = services_of(request).store
    tenant = await store.key_tenant(key_id)
    bound = await store.key_patient(key_id)
    if bound is not None and patient_id not in (None, bound):
        raise RewardInputError("key is for another patient", code="reward_patient_forbidden")
    patient = patient_id or bound
    if not patient:
        raise RewardInputError("patient_id is required", code="reward_patient_required")
    return tenant, patient


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused past ``limit`` bytes without reading all of it."""
    try:
        declared = int(request.headers.get("content-length") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise RewardInputError(code="reward_claim_too_large", size=declared, limit=limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RewardInputError(code="reward_claim_too_large", size=size, limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(body: bytes) -> ClaimIn:
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise RewardInputError("the body is not valid JSON", code="reward_invalid_event") from exc
    if not isinstance(raw, dict):
        raise RewardInputError("the body must be a JSON object", code="reward_invalid_event")
    try:
        return ClaimIn.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise RewardInputError(problems, code="reward_invalid_event") from exc


#: Every rewards route: 403 another patient's key, 422 a claim that cannot be judged,
#: 503 rewards are off; claims also 409 (a reused event id) and 413 (too large).
REWARD_ERRORS = error_responses(*KEY_ERRORS, 400, 503)


@router.post(
    "/v1/rewards/events",
    responses=error_responses(*KEY_ERRORS, 400, 409, 413, 503),
    # The body is read here (bounded) rather than by FastAPI; its schema is still ClaimIn.
    openapi_extra=body_schema(ClaimIn),
)
async def claim_reward(request: Request, key_id: KeyId) -> JSONResponse:
    """Claim a reward for an activity. The rules decide: ``status`` is ``awarded``,
    ``recorded`` (a streak day) or ``denied`` with a ``reason``; resending the same
    ``event_id`` returns the first decision and pays once."""
    locale = request_locale(request)
    try:
        service = _service(request)
        body = _parse(await _body(request, service.config.max_claim_bytes))
        tenant, patient = await _patient(request, key_id, body.patient_id)
        event = RewardEvent(
            event_id=body.event_id,
            tenant_id=tenant,
            patient_id=patient,
            type=body.type,
            occurred_at=body.occurred_at,
            payload=body.payload,
        )
        result = await service.claim(event)
    except (RewardInputError, RewardConflict) as exc:
        return _error(exc, locale)
    return JSONResponse(result.to_json(locale))


@router.get("/v1/rewards/balance", responses=REWARD_ERRORS)
async def reward_balance(
    request: Request,
    key_id: KeyId,
    patient_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
) -> JSONResponse:
    """Tokens awarded to the patient, split into minted (on chain) and pending."""
    locale = request_locale(request)
    try:
        service = _service(request)
        tenant, patient = await _patient(request, key_id, patient_id)
    except RewardInputError as exc:
        return _error(exc, locale)
    balance = await service.balance(tenant, patient)
    return JSONResponse(
        {
            "patient_id": patient,
            "token": "HEAL",
            "awarded": format_amount(balance.awarded),
            "minted": format_amount(balance.minted),
            "pending": format_amount(balance.pending),
            "awarded_units": str(balance.awarded),
            "minted_units": str(balance.minted),
            "pending_units": str(balance.pending),
            "awards": balance.awards,
        }
    )


@router.get("/v1/rewards/history", responses=REWARD_ERRORS)
async def reward_history(
    request: Request,
    key_id: KeyId,
    patient_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    before: Annotated[int | None, Query(ge=1)] = None,
) -> JSONResponse:
    """The patient's claims and their decisions, newest first. Pass ``next_before`` back as
    ``before`` for older ones."""
    locale = request_locale(request)
    try:
        service = _service(request)
        tenant, patient = await _patient(request, key_id, patient_id)
    except RewardInputError as exc:
        return _error(exc, locale)
    page = await service.history(tenant, patient, limit=limit, before=before)
    items: list[dict[str, Any]] = []
    for item in page.items:
        entry = item.claim.to_json(locale)
        entry.update(seq=item.seq, mint=item.mint, tx_hash=item.tx_hash)
        items.append(entry)
    return JSONResponse({"patient_id": patient, "items": items, "next_before": page.next_before})
