"""Relational storage: SQLite by default, PostgreSQL by URL; Alembic migrations."""

from healtrace.storage.database import Database
from healtrace.storage.models import (
    AnchorBatch,
    ApiKey,
    AuditEntry,
    Base,
    ChatSession,
    Clinician,
    ClinicianLogin,
    ConsentGrant,
    EvidenceRow,
    Handoff,
    Message,
    Patient,
)

__all__ = [
    "AnchorBatch",
    "ApiKey",
    "AuditEntry",
    "Base",
    "ChatSession",
    "Clinician",
    "ClinicianLogin",
    "ConsentGrant",
    "Database",
    "EvidenceRow",
    "Handoff",
    "Message",
    "Patient",
]
