"""Where a patient's tokens go: a small interface the custodial-key part implements."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

__all__ = ["DictAddresses", "PatientAddresses"]


class PatientAddresses(Protocol):
    """The chain address that receives a patient's rewards."""

    async def address_of(self, tenant_id: str, patient_id: str) -> str:
        """The patient's address; raise LookupError when the patient has none (yet): their
        awards wait and are retried with the next batch."""


class DictAddresses:
    """Addresses from a mapping of ``(tenant_id, patient_id)`` (tests, demos)."""

    def __init__(self, addresses: Mapping[tuple[str, str], str] | None = None) -> None:
        self.addresses: dict[tuple[str, str], str] = dict(addresses or {})

    async def address_of(self, tenant_id: str, patient_id: str) -> str:
        try:
            return self.addresses[(tenant_id, patient_id)]
        except KeyError:
            raise LookupError(f"no address for patient {patient_id} of {tenant_id}") from None
