"""Consent in code: patients grant and revoke access, and a gate decides every record read.

Grants live in the ConsentRegistry on chain, signed by the patient (EIP-712; by their
custodial key when they have no wallet). The database keeps a mirror only for listing, and
a FHIR ``Consent`` resource is kept in step with each grant for systems that speak FHIR.

The gate (:meth:`ConsentGate.check`) reads the grant's state **from the chain** on every
call — no cache, so a revocation holds from the next call — and allows a read only when a
grant for exactly this patient → this grantee covers the record type (and category) and
has not expired by the wall clock. The model never reaches the gate's inputs: the patient
comes from the session's key, the grantee from the tenant. A chain that cannot be asked
means no access (fail closed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from healtrace.audit import AuditLog
from healtrace.chain.client import ChainUnavailable
from healtrace.chain.consent_sig import GrantConsent, RevokeConsent, grant_id, sign
from healtrace.config import Settings
from healtrace.errors import InputError, NotFoundError
from healtrace.records.ledger import ConsentLedger
from healtrace.records.patients import PatientInfo, PatientStore, grantee_address
from healtrace.records.scopes import Scope, candidate_scopes, parse_scope
from healtrace.storage import ConsentGrant, Database
from healtrace.storage.models import utcnow

__all__ = ["ConsentGate", "ConsentService", "Decision", "GrantInfo"]

#: How long a relayed signature stays valid (the contract refuses it afterwards).
SIGNATURE_TTL_S = 600


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    resource_type: str
    category: str | None
    #: granted | no_grant | revoked | expired | chain_unavailable
    reason: str
    scope: str | None = None
    grant_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.resource_type,
            "category": self.category,
            "allowed": self.allowed,
            "reason": self.reason,
            "scope": self.scope,
            "grant_id": self.grant_id,
        }


@dataclass(frozen=True, slots=True)
class GrantInfo:
    grant_id: str
    scope: str
    grantee: str
    grantee_label: str
    expires_at: datetime
    status: str
    tx_hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "grant_id": self.grant_id,
            "scope": self.scope,
            "grantee": self.grantee,
            "grantee_label": self.grantee_label,
            "expires_at": self.expires_at.astimezone(UTC).isoformat(),
            "status": self.status,
            "tx_hash": self.tx_hash,
        }


def _grant_info(row: ConsentGrant) -> GrantInfo:
    expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
    return GrantInfo(
        row.grant_id,
        row.scope,
        row.grantee,
        row.grantee_label,
        expires,
        row.status,
        row.revoked_tx_hash or row.tx_hash,
    )


class ConsentGate:
    """Decides, from the chain, whether ``grantee`` may read a record type of ``patient``."""

    def __init__(self, ledger: ConsentLedger, *, clock: Any = time.time) -> None:
        self.ledger = ledger
        self.clock = clock

    async def check(
        self, patient: PatientInfo, grantee: str, resource_type: str, category: str | None
    ) -> Decision:
        reason = "no_grant"
        now = int(self.clock())
        for scope in candidate_scopes(resource_type, category):
            try:
                state = await self.ledger.grant_state(patient.address, grantee, scope.hash)
            except ChainUnavailable:
                return Decision(False, resource_type, category, "chain_unavailable")
            if state is None:
                continue
            gid = "0x" + grant_id(patient.address, grantee, scope.hash).hex()
            if state.valid_at(now):
                return Decision(True, resource_type, category, "granted", scope.canonical, gid)
            reason = "revoked" if state.revoked else "expired"
        return Decision(False, resource_type, category, reason)


class ConsentService:
    """Grants, revocations and listings for one service (all tenants)."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        patients: PatientStore,
        ledger: ConsentLedger,
        audit: AuditLog,
        *,
        fhir: Any = None,
        clock: Any = time.time,
    ) -> None:
        self.config = settings.records
        self.db = db
        self.patients = patients
        self.ledger = ledger
        self.audit = audit
        self.fhir = fhir
        self.clock = clock

    def grantee(self, patient: PatientInfo, who: str) -> tuple[str, str]:
        """``(address, label)`` for ``assistant``, ``clinician:<id>`` or ``patient``."""
        if who == "assistant":
            return grantee_address("assistant", patient.tenant_id), "assistant"
        if who == "patient":
            return patient.address, "patient"
        if who.startswith("clinician:") and 1 < len(who) - 10 <= 64:
            clinician = who.removeprefix("clinician:")
            return grantee_address("clinician", patient.tenant_id, clinician), who
        raise InputError(
            "grantee is assistant, patient or clinician:<id>", code="consent_grantee_invalid"
        )

    async def grant(
        self,
        patient: PatientInfo,
        scopes: list[str],
        *,
        days: int | None = None,
        grantee: str = "assistant",
    ) -> list[GrantInfo]:
        """Grant ``scopes`` for ``days`` (custodial patients: signed here with their key)."""
        parsed = self._scopes(scopes)
        days = self.config.default_grant_days if days is None else days
        if not 1 <= days <= self.config.max_grant_days:
            raise InputError(
                f"days must be 1-{self.config.max_grant_days}",
                code="consent_duration_invalid",
                max=self.config.max_grant_days,
            )
        address, label = self.grantee(patient, grantee)
        key = await self.patients.private_key(patient.tenant_id, patient.id)
        expires = int(self.clock()) + days * 86_400
        granted = []
        for scope in parsed:
            message = GrantConsent(
                patient=patient.address,
                grantee=address,
                scope_hash=scope.hash,
                expires_at=expires,
                nonce=await self.ledger.nonce(patient.address),
                deadline=int(self.clock()) + SIGNATURE_TTL_S,
            )
            signature = sign(key, self.ledger.domain, message)
            granted.append(await self._record_grant(patient, message, signature, scope, label))
        return granted

    async def grant_signed(
        self,
        patient: PatientInfo,
        scope: str,
        *,
        grantee: str,
        expires_at: int,
        nonce: int,
        deadline: int,
        signature: bytes,
    ) -> GrantInfo:
        """Relay a grant the patient signed with their own wallet."""
        parsed = self._scopes([scope])[0]
        address, label = self.grantee(patient, grantee)
        message = GrantConsent(
            patient=patient.address,
            grantee=address,
            scope_hash=parsed.hash,
            expires_at=expires_at,
            nonce=nonce,
            deadline=deadline,
        )
        return await self._record_grant(patient, message, signature, parsed, label)

    async def _record_grant(
        self,
        patient: PatientInfo,
        message: GrantConsent,
        signature: bytes,
        scope: Scope,
        label: str,
    ) -> GrantInfo:
        tx_hash = await self.ledger.submit_grant(message, signature)
        gid = "0x" + grant_id(message.patient, message.grantee, message.scope_hash).hex()
        expires = datetime.fromtimestamp(message.expires_at, UTC)

        def mirror(s: Session) -> GrantInfo:
            row = s.get(ConsentGrant, gid)
            if row is None:
                row = ConsentGrant(
                    grant_id=gid,
                    tenant_id=patient.tenant_id,
                    patient_id=patient.id,
                    grantee=message.grantee,
                    grantee_label=label,
                    scope=scope.canonical,
                    expires_at=expires,
                    status="active",
                    tx_hash=tx_hash,
                )
                s.add(row)
            else:
                row.expires_at, row.status, row.tx_hash = expires, "active", tx_hash
                row.revoked_tx_hash, row.updated_at = None, utcnow()
            s.flush()
            return _grant_info(row)

        info = await self.db.run(mirror)
        await self._sync_fhir(patient, info)
        await self.audit.append(
            tenant_id=patient.tenant_id,
            actor=f"patient:{patient.id}",
            action="consent_granted",
            details={
                "grant_id": gid,
                "scope": scope.canonical,
                "grantee": label,
                "expires_at": info.expires_at.isoformat(),
                "tx_hash": tx_hash,
            },
            patient_id=patient.id,
        )
        return info

    async def revoke(self, patient: PatientInfo, gid: str) -> GrantInfo:
        """Revoke one of the patient's grants (signed with their custodial key)."""
        row = await self._grant_row(patient, gid)
        scope = parse_scope(row.scope)
        key = await self.patients.private_key(patient.tenant_id, patient.id)
        message = RevokeConsent(
            patient=patient.address,
            grantee=row.grantee,
            scope_hash=scope.hash,
            nonce=await self.ledger.nonce(patient.address),
            deadline=int(self.clock()) + SIGNATURE_TTL_S,
        )
        tx_hash = await self.ledger.submit_revoke(message, sign(key, self.ledger.domain, message))

        def mark(s: Session) -> GrantInfo:
            s.execute(
                update(ConsentGrant)
                .where(ConsentGrant.grant_id == gid)
                .values(status="revoked", revoked_tx_hash=tx_hash, updated_at=utcnow())
            )
            found = s.get(ConsentGrant, gid)
            assert found is not None
            s.refresh(found)
            return _grant_info(found)

        info = await self.db.run(mark)
        await self._sync_fhir(patient, info)
        await self.audit.append(
            tenant_id=patient.tenant_id,
            actor=f"patient:{patient.id}",
            action="consent_revoked",
            details={"grant_id": gid, "scope": row.scope, "tx_hash": tx_hash},
            patient_id=patient.id,
        )
        return info

    async def list_grants(self, patient: PatientInfo) -> list[GrantInfo]:
        def query(s: Session) -> list[GrantInfo]:
            rows = s.scalars(
                select(ConsentGrant)
                .where(
                    ConsentGrant.patient_id == patient.id,
                    ConsentGrant.tenant_id == patient.tenant_id,
                )
                .order_by(ConsentGrant.created_at.desc())
            )
            return [_grant_info(r) for r in rows]

        grants = await self.db.run(query)
        now = datetime.fromtimestamp(self.clock(), UTC)
        return [
            GrantInfo(
                g.grant_id, g.scope, g.grantee, g.grantee_label, g.expires_at, "expired", g.tx_hash
            )
            if g.status == "active" and g.expires_at <= now
            else g
            for g in grants
        ]

    async def _grant_row(self, patient: PatientInfo, gid: str) -> ConsentGrant:
        def find(s: Session) -> ConsentGrant | None:
            row = s.get(ConsentGrant, gid.lower())
            if row is None or row.patient_id != patient.id or row.tenant_id != patient.tenant_id:
                return None
            return row

        row = await self.db.run(find)
        if row is None or row.status != "active":
            raise NotFoundError(f"no active grant {gid}", code="consent_not_found")
        return row

    def _scopes(self, scopes: list[str]) -> list[Scope]:
        if not scopes or len(scopes) > 20:
            raise InputError("give 1-20 scopes", code="consent_scope_invalid", scope="")
        return [parse_scope(s) for s in scopes]

    async def _sync_fhir(self, patient: PatientInfo, grant: GrantInfo) -> None:
        """Keep a FHIR Consent resource in step with the grant (when a store is attached)."""
        if self.fhir is None:
            return
        resource = consent_resource(patient, grant)
        await self.fhir.put(resource, tenant_id=patient.tenant_id)


def consent_resource(patient: PatientInfo, grant: GrantInfo) -> dict[str, Any]:
    """The FHIR R4 Consent that mirrors ``grant`` (id derived from the grant id)."""
    return {
        "resourceType": "Consent",
        "id": "ht-" + grant.grant_id[2:34],
        "status": "active" if grant.status == "active" else "inactive",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient.fhir_patient_id}"},
        "dateTime": utcnow().isoformat(),
        "policyRule": {"text": grant.scope},
        "sourceReference": {"display": f"ConsentRegistry grant {grant.grant_id}"},
        "provision": {
            "type": "permit",
            "period": {"end": grant.expires_at.isoformat()},
            "actor": [
                {
                    "role": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v3-RoleClass",
                                "code": "PROV" if grant.grantee_label != "patient" else "PAT",
                            }
                        ]
                    },
                    "reference": {"display": f"{grant.grantee_label} {grant.grantee}"},
                }
            ],
            "action": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/consentaction",
                            "code": "access",
                        }
                    ]
                }
            ],
        },
    }
