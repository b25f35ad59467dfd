"""The audit log: append-only and hash-chained, so a changed or deleted entry shows.

Each entry's hash is the SHA-256 of its canonical JSON, which includes the previous entry's
hash (``prev_hash``; the first entry's is 64 zeros)::

    hash = sha256(json.dumps({"tenant_id", "at", "actor", "action", "session_id",
                              "details", "prev_hash"}, sort_keys=True,
                             separators=(",", ":"), ensure_ascii=False).encode("utf-8"))

``at`` is written as ISO 8601 in UTC with microseconds. Entries hold ids, levels and rule
codes, never what a patient wrote.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from healtrace.storage import AuditEntry, Database
from healtrace.storage.models import iso_utc, utcnow

GENESIS = "0" * 64
#: Arbitrary constant naming the PostgreSQL advisory lock that serialises appends.
_PG_LOCK_KEY = 0x4A7D17


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    tenant_id: str
    at: datetime
    actor: str
    action: str
    session_id: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "tenant_id": self.tenant_id,
            "at": _iso(self.at),
            "actor": self.actor,
            "action": self.action,
            "session_id": self.session_id,
            "details": self.details,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True, slots=True)
class ChainCheck:
    ok: bool
    entries: int
    #: The first entry whose hash or link does not hold.
    broken_at: int | None = None


def _iso(at: datetime) -> str:
    return iso_utc(at, timespec="microseconds")


def entry_hash(
    *,
    tenant_id: str,
    at: datetime,
    actor: str,
    action: str,
    session_id: str | None,
    details: dict[str, Any],
    prev_hash: str,
) -> str:
    canonical = json.dumps(
        {
            "tenant_id": tenant_id,
            "at": _iso(at),
            "actor": actor,
            "action": action,
            "session_id": session_id,
            "details": details,
            "prev_hash": prev_hash,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _row_hash(row: AuditEntry) -> str:
    return entry_hash(
        tenant_id=row.tenant_id,
        at=row.at,
        actor=row.actor,
        action=row.action,
        session_id=row.session_id,
        details=dict(row.details),
        prev_hash=row.prev_hash,
    )


def _record(row: AuditEntry) -> AuditRecord:
    return AuditRecord(
        seq=row.seq,
        tenant_id=row.tenant_id,
        at=row.at,
        actor=row.actor,
        action=row.action,
        session_id=row.session_id,
        details=dict(row.details),
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def append_entry(
    s: Session,
    *,
    tenant_id: str,
    actor: str,
    action: str,
    session_id: str | None = None,
    details: dict[str, Any] | None = None,
    patient_id: str | None = None,
) -> AuditRecord:
    """Append inside the caller's transaction, so the entry commits with what it records.

    ``patient_id`` files the entry under the patient it is about (their access log); it is
    also put into ``details``, so the hash covers it."""
    details = dict(details or {})
    if patient_id is not None:
        details["patient_id"] = patient_id
    if s.get_bind().dialect.name == "postgresql":
        # Workers append concurrently; the chain needs one writer at a time.
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
    prev = s.scalar(select(AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)) or GENESIS
    row = AuditEntry(
        tenant_id=tenant_id,
        at=utcnow(),
        actor=actor,
        action=action,
        session_id=session_id,
        details=details,
        patient_id=patient_id,
        prev_hash=prev,
    )
    row.hash = _row_hash(row)
    s.add(row)
    s.flush()
    return _record(row)


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def append(
        self,
        *,
        tenant_id: str,
        actor: str,
        action: str,
        session_id: str | None = None,
        details: dict[str, Any] | None = None,
        patient_id: str | None = None,
    ) -> AuditRecord:
        return await self.db.run(
            lambda s: append_entry(
                s,
                tenant_id=tenant_id,
                actor=actor,
                action=action,
                session_id=session_id,
                details=details,
                patient_id=patient_id,
            )
        )

    async def for_patient(
        self, tenant_id: str, patient_id: str, *, limit: int = 200
    ) -> list[AuditRecord]:
        """Entries about one patient, newest first (their access log)."""

        def query(s: Session) -> list[AuditRecord]:
            rows = s.scalars(
                select(AuditEntry)
                .where(AuditEntry.tenant_id == tenant_id, AuditEntry.patient_id == patient_id)
                .order_by(AuditEntry.seq.desc())
                .limit(limit)
            )
            return [_record(r) for r in rows]

        return await self.db.run(query)

    async def entries(
        self,
        *,
        tenant_id: str | None = None,
        session_id: str | None = None,
        limit: int = 500,
    ) -> list[AuditRecord]:
        def query(s: Session) -> list[AuditRecord]:
            stmt = select(AuditEntry).order_by(AuditEntry.seq)
            if tenant_id is not None:
                stmt = stmt.where(AuditEntry.tenant_id == tenant_id)
            if session_id is not None:
                stmt = stmt.where(AuditEntry.session_id == session_id)
            return [_record(r) for r in s.scalars(stmt.limit(limit))]

        return await self.db.run(query)

    async def verify(self) -> ChainCheck:
        """Recompute every hash and link, oldest first."""

        def check(s: Session) -> ChainCheck:
            prev = GENESIS
            count = 0
            for row in s.scalars(select(AuditEntry).order_by(AuditEntry.seq)).yield_per(1000):
                count += 1
                if row.prev_hash != prev or row.hash != _row_hash(row):
                    return ChainCheck(ok=False, entries=count, broken_at=row.seq)
                prev = row.hash
            return ChainCheck(ok=True, entries=count)

        return await self.db.run(check)
