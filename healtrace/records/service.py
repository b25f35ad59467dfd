"""Consent-gated record lookups: the gate decides, the store is read only when it allows,
every decision is audited, and the model gets a minimum-necessary summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from healtrace.audit import AuditLog
from healtrace.errors import localized
from healtrace.records.consent import ConsentGate, ConsentService, Decision
from healtrace.records.patients import PatientInfo, PatientStore

__all__ = ["KINDS", "LookupResult", "RecordKind", "RecordsService"]

RecordKind = Literal["labs", "conditions", "medications", "allergies"]
#: What each kind reads: (resource type, category).
KINDS: dict[RecordKind, list[tuple[str, str | None]]] = {
    "labs": [("Observation", "laboratory")],
    "conditions": [("Condition", None)],
    "medications": [("MedicationRequest", None), ("MedicationStatement", None)],
    "allergies": [("AllergyIntolerance", None)],
}


@dataclass
class LookupResult:
    decisions: list[Decision]
    #: The minimum-necessary summary of what was read (None when nothing was allowed).
    summary: Any = None
    read_ids: list[str] = field(default_factory=list)
    #: Hash of the audit entry recording this lookup (it goes into the evidence record).
    audit_hash: str = ""

    @property
    def denied(self) -> list[Decision]:
        return [d for d in self.decisions if not d.allowed]


class RecordsService:
    """Patients, consent and gated lookups, for the API and the ``lookup_records`` tool."""

    def __init__(
        self,
        *,
        patients: PatientStore,
        consent: ConsentService,
        gate: ConsentGate,
        fhir: Any,
        audit: AuditLog,
        lookup_limit: int = 20,
    ) -> None:
        self.patients = patients
        self.consent = consent
        self.gate = gate
        self.fhir = fhir
        self.audit = audit
        self.lookup_limit = lookup_limit

    async def lookup(
        self,
        patient: PatientInfo,
        kinds: list[RecordKind],
        *,
        locale: str,
        session_id: str | None = None,
        grantee: str = "assistant",
    ) -> LookupResult:
        """Read ``kinds`` of ``patient``'s records as ``grantee`` (the tenant's assistant,
        the patient, ``clinician:<id>``).

        The gate decides each record type; only allowed types are read; one audit entry
        records every decision and which resources were read."""
        from healtrace.records.summary import summarize

        address, label = self.consent.grantee(patient, grantee)
        decisions: list[Decision] = []
        resources: list[dict[str, Any]] = []
        for kind in dict.fromkeys(kinds):
            for resource_type, category in KINDS[kind]:
                decision = await self.gate.check(patient, address, resource_type, category)
                decisions.append(decision)
                if not decision.allowed:
                    continue
                resources += await self.fhir.search(
                    tenant_id=patient.tenant_id,
                    patient=patient.fhir_patient_id,
                    resource_type=resource_type,
                    category=category,
                    limit=self.lookup_limit,
                )
        summary = summarize(resources, locale) if resources else None
        read_ids = [f"{r['resourceType']}/{r.get('id', '')}" for r in resources]
        entry = await self.audit.append(
            tenant_id=patient.tenant_id,
            actor=label,
            action="records_lookup",
            session_id=session_id,
            details={
                "decisions": [d.to_dict() for d in decisions],
                "allowed": all(d.allowed for d in decisions),
                "resources": read_ids,
            },
            patient_id=patient.id,
        )
        return LookupResult(decisions, summary, read_ids, entry.hash)

    @staticmethod
    def denial_text(denied: list[Decision], locale: str) -> str:
        """What to tell the patient about records the assistant may not read, and how to
        grant access."""
        kinds = ", ".join(sorted({d.resource_type for d in denied}))
        unverifiable = any(d.reason == "chain_unavailable" for d in denied)
        code = "records_consent_unverifiable" if unverifiable else "records_consent_required"
        return localized(code, locale, kinds=kinds)
