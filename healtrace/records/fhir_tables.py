"""The embedded FHIR store's table: one row per resource, with the columns searches need."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from healtrace.storage.models import Base, utcnow


class FhirResourceRow(Base):
    """A validated FHIR R4 resource of one tenant, keyed by type and id.

    ``categories`` and ``codes`` hold search tokens, each wrapped in newlines
    (``"\\nlaboratory\\nhttp://…|laboratory\\n"``), so a token matches as a whole by substring.
    """

    __tablename__ = "fhir_resources"
    __table_args__ = (
        Index(
            "ix_fhir_resources_patient",
            "tenant_id",
            "patient_id",
            "resource_type",
            "clinical_date",
        ),
        Index("ix_fhir_resources_updated", "tenant_id", "last_updated"),
    )

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: ``x`` of the ``Patient/x`` the resource is about; a Patient's own id; empty: none.
    patient_id: Mapped[str] = mapped_column(String(64), default="")
    categories: Mapped[str] = mapped_column(Text, default="")
    codes: Mapped[str] = mapped_column(Text, default="")
    #: When it happened clinically (effective, onset, authored …), UTC; null: undated.
    clinical_date: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_updated: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    resource: Mapped[dict[str, Any]] = mapped_column(JSON)
