"""Tables for sessions, messages, API keys, clinicians, handoffs and the audit log
(SQLAlchemy 2 declarative, typed)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso_utc(at: datetime, timespec: str = "auto") -> str:
    """ISO 8601 with the UTC offset (SQLite hands timezone-aware columns back naive)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat(timespec=timespec)


class Base(DeclarativeBase):
    pass


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    #: The first characters of the key, shown in listings so a key can be recognised.
    prefix: Mapped[str] = mapped_column(String(16))
    #: SHA-256 of the whole key. Keys are 256-bit random, so a fast hash is enough.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: The organisation (hospital) the key belongs to; its sessions are its clinicians' to see.
    tenant_id: Mapped[str] = mapped_column(String(64), default="default", index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: A patient key: sessions opened with it act for this patient (records, rewards).
    patient_id: Mapped[str | None] = mapped_column(String(32), nullable=True, default=None)
    #: ``secret`` (servers; any origin) or ``publishable`` (browsers: only from its origins,
    #: only to chat).
    kind: Mapped[str] = mapped_column(String(16), default="secret", server_default="secret")
    #: A publishable key's browser origins (exact ``scheme://host[:port]``); None for secret keys.
    allowed_origins: Mapped[list[str] | None] = mapped_column(JSON, nullable=True, default=None)


class ChatSession(Base):
    __tablename__ = "chat_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"), index=True)
    tenant_id: Mapped[str] = mapped_column(String(64), default="default", index=True)
    title: Mapped[str] = mapped_column(String(200), default="")
    locale: Mapped[str] = mapped_column(String(16), default="en")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
    #: The patient the session acts for (from a patient key), if any.
    patient_id: Mapped[str | None] = mapped_column(String(32), nullable=True, default=None)
    #: Highest event sequence number handed out, so numbering continues after a restart.
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    #: Model-written summary of the turns older than ``summary_until`` (a message position).
    summary: Mapped[str] = mapped_column(Text, default="")
    summary_until: Mapped[int] = mapped_column(Integer, default=0)

    messages: Mapped[list[Message]] = relationship(
        back_populates="session", order_by="Message.position", cascade="all, delete-orphan"
    )


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_session_position", "session_id", "position", unique=True),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("chat_sessions.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    turn_id: Mapped[str] = mapped_column(String(32))
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text, default="")
    reasoning: Mapped[str] = mapped_column(Text, default="")
    tool_calls: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    tool_call_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    tool_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: Sources the answer cites (marker, chunk and document ids, title, section, URL).
    citations: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    #: Safety record: triage of a user message, output checks of an answer.
    safety: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    #: Who wrote a clinician message (the clinician's display name).
    author: Mapped[str] = mapped_column(String(200), default="")
    #: Voice turns: how a spoken question was heard, what of a spoken answer was heard.
    voice: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    #: complete | streaming | cancelled | error | interrupted
    status: Mapped[str] = mapped_column(String(16), default="complete")
    model: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    session: Mapped[ChatSession] = relationship(back_populates="messages")


class Clinician(Base):
    __tablename__ = "clinicians"
    __table_args__ = (Index("ix_clinicians_tenant_username", "tenant_id", "username", unique=True),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), default="default")
    username: Mapped[str] = mapped_column(String(100))
    display_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(32), default="nurse")
    #: ``scrypt$n$r$p$salt$hash`` (hex).
    password_hash: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ClinicianLogin(Base):
    """A console login: the cookie carries the token, the table its hash."""

    __tablename__ = "clinician_logins"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    clinician_id: Mapped[str] = mapped_column(ForeignKey("clinicians.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Handoff(Base):
    """A session's request for a person: waiting → active → closed."""

    __tablename__ = "handoffs"
    __table_args__ = (Index("ix_handoffs_tenant_status", "tenant_id", "status"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    session_id: Mapped[str] = mapped_column(
        ForeignKey("chat_sessions.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default="waiting")
    #: patient_request | triage
    reason: Mapped[str] = mapped_column(String(32))
    triage: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    clinician_id: Mapped[str | None] = mapped_column(ForeignKey("clinicians.id"), nullable=True)
    #: taken over | handed back | cancelled by the patient
    outcome: Mapped[str] = mapped_column(String(32), default="")
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    taken_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AuditEntry(Base):
    """Append-only, hash-chained: each entry's hash covers the previous entry's hash."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: ``clinician:<id>``, ``patient:<session id>`` or ``system``.
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))
    session_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: The patient an entry is about (also inside ``details``, which the hash covers), so a
    #: patient's own access log is one indexed query.
    patient_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class EvidenceRow(Base):
    """One answer's evidence record: the outbox of the anchoring batcher.

    Written in the same transaction as the answer it describes. ``batch_id`` is empty while
    the record waits for a batch; a batch, once formed, never changes its members.
    """

    __tablename__ = "evidence_records"
    __table_args__ = (Index("ix_evidence_pending", "batch_id", "seq"),)

    #: Insertion order, so batches take records oldest first.
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    #: keccak256 leaf hash, 0x-prefixed lowercase hex.
    record_hash: Mapped[str] = mapped_column(String(66), unique=True)
    message_id: Mapped[str] = mapped_column(String(32), unique=True)
    session_id: Mapped[str] = mapped_column(String(32), index=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    #: The canonical JSON the hash was computed over (identifiers and hashes only).
    record: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    batch_id: Mapped[str | None] = mapped_column(
        ForeignKey("anchor_batches.id"), nullable=True, default=None
    )
    leaf_index: Mapped[int | None] = mapped_column(Integer, nullable=True, default=None)


class AnchorBatch(Base):
    """A Merkle batch of evidence records and its anchoring transaction.

    built → sent (transaction submitted, hash known) → anchored (mined, block known).
    The registry accepts a root once, so re-sending after a crash can never anchor twice.
    """

    __tablename__ = "anchor_batches"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    root: Mapped[str] = mapped_column(String(66), unique=True)
    leaf_count: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="built", index=True)
    chain_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    contract: Mapped[str | None] = mapped_column(String(42), nullable=True)
    tx_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    block_number: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    gas_used: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    anchored_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Patient(Base):
    """A patient known to a tenant: their FHIR id and the address that signs their consent."""

    __tablename__ = "patients"
    __table_args__ = (
        Index("ix_patients_tenant_fhir", "tenant_id", "fhir_patient_id", unique=True),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    fhir_patient_id: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(42), index=True)
    #: The custodial key as an encrypted keystore; None when the patient brings a wallet.
    sealed_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ConsentGrant(Base):
    """A mirror of a grant in the ConsentRegistry, for listing; the chain decides access."""

    __tablename__ = "consent_grants"

    grant_id: Mapped[str] = mapped_column(String(66), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    grantee: Mapped[str] = mapped_column(String(42))
    #: assistant | clinician:<id> | patient
    grantee_label: Mapped[str] = mapped_column(String(100))
    scope: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: active | revoked
    status: Mapped[str] = mapped_column(String(16), default="active")
    tx_hash: Mapped[str] = mapped_column(String(66))
    revoked_tx_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
