"""Relational storage: SQLite by default, PostgreSQL by URL; Alembic migrations."""

from healtrace.storage.database import Database
from healtrace.storage.models import (
    ApiKey,
    AuditEntry,
    Base,
    ChatSession,
    Clinician,
    ClinicianLogin,
    Handoff,
    Message,
)

__all__ = [
    "ApiKey",
    "AuditEntry",
    "Base",
    "ChatSession",
    "Clinician",
    "ClinicianLogin",
    "Database",
    "Handoff",
    "Message",
]
