"""Patients: who a tenant's patient key acts for, their FHIR id, and the address that signs
their consent (a custodial key, or the patient's own wallet).

Grantees are addresses in the ConsentRegistry. The assistant acting for a tenant, and each
clinician of a tenant, get a fixed address derived from their names — an identity, not a
signing key (grantees never sign anything); the patient is their own address.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from eth_hash.auto import keccak
from eth_utils.address import is_address, to_checksum_address
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from healtrace.errors import ConflictError, InputError, NotFoundError
from healtrace.records.custody import Custody
from healtrace.storage import Database, Patient

__all__ = ["PatientInfo", "PatientStore", "grantee_address"]

GranteeKind = Literal["assistant", "clinician", "patient"]


def grantee_address(kind: GranteeKind, tenant_id: str, who: str = "") -> str:
    """The registry address standing for the assistant of ``tenant_id`` or one of its
    clinicians (``who`` = clinician id)."""
    label = f"healtrace.grantee.v1\x00{kind}\x00{tenant_id}\x00{who}".encode()
    return str(to_checksum_address(keccak(label)[-20:]))


@dataclass(frozen=True, slots=True)
class PatientInfo:
    id: str
    tenant_id: str
    fhir_patient_id: str
    address: str
    custodial: bool


def _info(row: Patient) -> PatientInfo:
    return PatientInfo(
        row.id, row.tenant_id, row.fhir_patient_id, row.address, row.sealed_key is not None
    )


class PatientStore:
    def __init__(self, db: Database, custody: Custody) -> None:
        self.db = db
        self.custody = custody

    async def create(
        self, tenant_id: str, fhir_patient_id: str, *, wallet: str | None = None
    ) -> PatientInfo:
        """A new patient of ``tenant_id``: with their own ``wallet`` address, or a custodial
        key made for them. ConflictError(patient_exists) if the FHIR id is taken."""
        fhir_id = fhir_patient_id.strip()
        if not fhir_id or len(fhir_id) > 64:
            raise InputError("FHIR patient id must be 1-64 characters", code="patient_invalid")
        patient_id = uuid.uuid4().hex
        if wallet is not None:
            if not is_address(wallet):
                raise InputError("not an Ethereum address", code="patient_invalid")
            address, sealed = str(to_checksum_address(wallet)), None
        else:
            address, sealed = self.custody.create(tenant_id, patient_id)
        row = Patient(
            id=patient_id,
            tenant_id=tenant_id,
            fhir_patient_id=fhir_id,
            address=address,
            sealed_key=sealed,
        )

        def add(s: Session) -> PatientInfo:
            s.add(row)
            s.flush()
            return _info(row)

        try:
            return await self.db.run(add)
        except IntegrityError as exc:
            raise ConflictError(
                f"patient {fhir_id} already exists in {tenant_id}", code="patient_exists"
            ) from exc

    async def get(self, tenant_id: str, patient_id: str) -> PatientInfo:
        def find(s: Session) -> PatientInfo | None:
            row = s.get(Patient, patient_id)
            return _info(row) if row is not None and row.tenant_id == tenant_id else None

        found = await self.db.run(find)
        if found is None:
            raise NotFoundError(f"no patient {patient_id}", code="patient_not_found")
        return found

    async def by_fhir_id(self, tenant_id: str, fhir_patient_id: str) -> PatientInfo | None:
        def find(s: Session) -> PatientInfo | None:
            row = s.scalar(
                select(Patient).where(
                    Patient.tenant_id == tenant_id, Patient.fhir_patient_id == fhir_patient_id
                )
            )
            return _info(row) if row is not None else None

        return await self.db.run(find)

    async def private_key(self, tenant_id: str, patient_id: str) -> bytes:
        """The custodial key (InputError(patient_has_wallet) for a wallet patient)."""
        sealed = await self._sealed(tenant_id, patient_id)
        return self.custody.open(tenant_id, patient_id, sealed)

    async def export_key(self, tenant_id: str, patient_id: str, password: str) -> dict[str, object]:
        sealed = await self._sealed(tenant_id, patient_id)
        return self.custody.export(tenant_id, patient_id, sealed, password)

    async def _sealed(self, tenant_id: str, patient_id: str) -> str:
        def find(s: Session) -> str | None:
            row = s.get(Patient, patient_id)
            if row is None or row.tenant_id != tenant_id:
                raise NotFoundError(f"no patient {patient_id}", code="patient_not_found")
            return row.sealed_key

        sealed = await self.db.run(find)
        if sealed is None:
            raise InputError("this patient signs with their own wallet", code="patient_has_wallet")
        return sealed

    async def address_of(self, tenant_id: str, patient_id: str) -> str:
        """Where the patient's tokens go (the rewards minter asks this); LookupError for a
        patient not registered here (their awards wait)."""
        try:
            return (await self.get(tenant_id, patient_id)).address
        except NotFoundError as exc:
            raise LookupError(f"no patient {patient_id} in {tenant_id}") from exc
