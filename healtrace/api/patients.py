"""REST: patients (made by an organisation's key) and what a patient's own key can do —
grant, list and revoke record access, read their access log, export their key, and read
their records through the same consent gate the assistant uses.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from healtrace.api._http import KEY_ERRORS, KeyId, error_responses, request_locale, services_of
from healtrace.chain.consent_sig import GrantConsent, typed_data
from healtrace.errors import AuthError, InputError
from healtrace.records.consent import SIGNATURE_TTL_S
from healtrace.records.patients import PatientInfo
from healtrace.records.scopes import parse_scope
from healtrace.records.service import RecordKind, RecordsService

router = APIRouter(tags=["patients"])


def _records(request: Request) -> RecordsService:
    records = services_of(request).records
    if records is None:
        raise InputError(
            "records need the chain (HEALTRACE_CHAIN__ENABLED)", code="chain_unavailable"
        )
    return records


async def current_patient(request: Request, key_id: KeyId) -> PatientInfo:
    """The patient a patient key acts for (401 patient_key_required for other keys)."""
    services = services_of(request)
    patient_id = await services.store.key_patient(key_id)
    if patient_id is None:
        raise AuthError("not a patient key", code="patient_key_required")
    tenant = await services.store.key_tenant(key_id)
    return await _records(request).patients.get(tenant, patient_id)


Me = Annotated[PatientInfo, Depends(current_patient)]

#: A patient's routes: 400 bad scope, grantee or duration; 403 not a patient key or a
#: signature not the patient's; 404 no such patient or grant; 409 a wallet patient, a
#: replayed signature or a refusing registry; 410 an expired signature; 503 no chain.
ME_ERRORS = error_responses(*KEY_ERRORS, 400, 404, 409, 410, 503)


class PatientIn(BaseModel):
    #: The patient's id in the FHIR store (``Patient/<id>``).
    fhir_patient_id: str = Field(min_length=1, max_length=64)
    #: The patient's own wallet address; omit for a custodial key kept by HealTrace.
    wallet: str | None = Field(default=None, max_length=42)


@router.post(
    "/v1/patients",
    status_code=201,
    responses=error_responses(*KEY_ERRORS, 400, 409, 503),
)
async def create_patient(request: Request, key_id: KeyId, body: PatientIn) -> dict[str, Any]:
    """Register a patient of the caller's organisation; returns a patient key (shown once)
    that chat clients use to act for them."""
    services = services_of(request)
    if await services.store.key_patient(key_id) is not None:
        raise AuthError("patient keys cannot create patients", code="tenant_key_required")
    tenant = await services.store.key_tenant(key_id)
    patient = await _records(request).patients.create(
        tenant, body.fhir_patient_id, wallet=body.wallet
    )
    _kid, key = await services.store.create_api_key(
        f"patient {patient.fhir_patient_id}", tenant_id=tenant, patient_id=patient.id
    )
    return {**_patient(patient), "api_key": key}


def _patient(p: PatientInfo) -> dict[str, Any]:
    return {
        "patient_id": p.id,
        "fhir_patient_id": p.fhir_patient_id,
        "address": p.address,
        "custodial": p.custodial,
    }


@router.get("/v1/me", responses=ME_ERRORS)
async def me(patient: Me) -> dict[str, Any]:
    return _patient(patient)


class GrantIn(BaseModel):
    #: SMART v2-style scopes, e.g. ``patient/Observation.rs?category=laboratory``.
    scopes: list[str] = Field(min_length=1, max_length=20)
    days: int | None = Field(default=None, ge=1, le=3650)
    #: ``assistant`` (this organisation's assistant), ``patient`` or ``clinician:<id>``.
    grantee: str = Field(default="assistant", max_length=80)


@router.post("/v1/me/consents", status_code=201, responses=ME_ERRORS)
async def grant(request: Request, patient: Me, body: GrantIn) -> dict[str, Any]:
    """Grant access (signed with the patient's custodial key; wallet patients use
    ``/v1/me/consents/typed-data`` and ``/v1/me/consents/signed``)."""
    grants = await _records(request).consent.grant(
        patient, body.scopes, days=body.days, grantee=body.grantee
    )
    return {"grants": [g.to_dict() for g in grants]}


@router.get("/v1/me/consents", responses=ME_ERRORS)
async def list_grants(request: Request, patient: Me) -> dict[str, Any]:
    grants = await _records(request).consent.list_grants(patient)
    return {"grants": [g.to_dict() for g in grants]}


@router.delete("/v1/me/consents/{grant_id}", responses=ME_ERRORS)
async def revoke(request: Request, patient: Me, grant_id: str) -> dict[str, Any]:
    """Revoke a grant; the next read of those records is refused."""
    if len(grant_id) != 66 or not grant_id.startswith("0x"):
        raise InputError("grant ids are 0x + 64 hex digits", code="consent_not_found")
    info = await _records(request).consent.revoke(patient, grant_id)
    return info.to_dict()


@router.get("/v1/me/consents/typed-data", responses=ME_ERRORS)
async def grant_typed_data(
    request: Request,
    patient: Me,
    scope: str,
    grantee: str = "assistant",
    days: Annotated[int, Field(ge=1, le=3650)] = 30,
) -> dict[str, Any]:
    """The EIP-712 message a wallet signs (``eth_signTypedData_v4``) to grant ``scope``."""
    records = _records(request)
    parsed = parse_scope(scope)
    address, _label = records.consent.grantee(patient, grantee)
    nonce = await records.consent.ledger.nonce(patient.address)
    now = int(time.time())
    message = GrantConsent(
        patient=patient.address,
        grantee=address,
        scope_hash=parsed.hash,
        expires_at=now + days * 86_400,
        nonce=nonce,
        deadline=now + SIGNATURE_TTL_S,
    )
    return {"typed_data": typed_data(records.consent.ledger.domain, message), "scope": scope}


class SignedGrantIn(BaseModel):
    scope: str = Field(max_length=200)
    grantee: str = Field(default="assistant", max_length=80)
    expires_at: int = Field(ge=0)
    nonce: int = Field(ge=0)
    deadline: int = Field(ge=0)
    #: The wallet's 65-byte signature, 0x-hex.
    signature: str = Field(pattern=r"^0x[0-9a-fA-F]{130}$")


@router.post("/v1/me/consents/signed", status_code=201, responses=ME_ERRORS)
async def grant_signed(request: Request, patient: Me, body: SignedGrantIn) -> dict[str, Any]:
    """Relay a grant the patient signed with their own wallet."""
    info = await _records(request).consent.grant_signed(
        patient,
        body.scope,
        grantee=body.grantee,
        expires_at=body.expires_at,
        nonce=body.nonce,
        deadline=body.deadline,
        signature=bytes.fromhex(body.signature[2:]),
    )
    return info.to_dict()


@router.get("/v1/me/access-log", responses=ME_ERRORS)
async def access_log(request: Request, patient: Me, limit: int = 100) -> dict[str, Any]:
    """Every read of the patient's records and every consent change, newest first, as
    recorded in the hash-chained audit log."""
    entries = await services_of(request).audit.for_patient(
        patient.tenant_id, patient.id, limit=max(1, min(limit, 500))
    )
    return {"entries": [e.to_dict() for e in entries]}


class ExportIn(BaseModel):
    password: str = Field(min_length=1, max_length=200)


@router.post("/v1/me/key/export", responses=ME_ERRORS)
async def export_key(request: Request, patient: Me, body: ExportIn) -> dict[str, Any]:
    """The custodial key as a standard Ethereum keystore under the patient's password, to
    import into any wallet."""
    keystore = await _records(request).patients.export_key(
        patient.tenant_id, patient.id, body.password
    )
    return {"address": patient.address, "keystore": keystore}


@router.get("/v1/me/records", responses=ME_ERRORS)
async def my_records(
    request: Request,
    patient: Me,
    kinds: str = "labs,conditions,medications,allergies",
) -> dict[str, Any]:
    """The patient's records read for themself — through the same gate, so it needs a grant
    to ``patient`` (patients can see exactly what a grant unlocks)."""
    wanted: list[RecordKind] = []
    for kind in kinds.split(","):
        if kind not in ("labs", "conditions", "medications", "allergies"):
            raise InputError(f"unknown kind {kind[:20]!r}", code="invalid_event")
        wanted.append(kind)  # type: ignore[arg-type]
    records = _records(request)
    locale = request_locale(request)
    result = await records.lookup(patient, wanted, locale=locale, grantee="patient")
    return {
        "summary": result.summary.model_dump(mode="json") if result.summary else None,
        "denied": [d.to_dict() for d in result.denied],
        "how_to_grant": records.denial_text(result.denied, locale) if result.denied else "",
        "audit_hash": result.audit_hash,
    }
