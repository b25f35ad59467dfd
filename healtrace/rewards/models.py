"""The rewards tables: per-patient lock rows, judged claims, the append-only ledger, and
mint batches with their members (migration 0008).

Amounts are 18-decimal integers stored as decimal strings: they exceed 64-bit integers
and SQLite has no exact wide numeric type.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from healtrace.storage.models import Base, utcnow

__all__ = ["MintBatchItem", "MintBatchRow", "RewardAccount", "RewardClaim", "RewardLedgerEntry"]

_SEQ = BigInteger().with_variant(Integer, "sqlite")


class RewardAccount(Base):
    """One row per patient, locked (``SELECT … FOR UPDATE``) by every claim of that patient so
    the caps and cool-downs read from the ledger hold under concurrent claims."""

    __tablename__ = "reward_accounts"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RewardClaim(Base):
    """Every judged claim, paid or not; ``(tenant_id, event_id)`` is the idempotency key."""

    __tablename__ = "reward_claims"
    __table_args__ = (
        Index("ix_reward_claims_event", "tenant_id", "event_id", unique=True),
        Index(
            "ix_reward_claims_fingerprint", "tenant_id", "patient_id", "fingerprint", unique=True
        ),
        Index("ix_reward_claims_patient", "tenant_id", "patient_id", "event_type", "received_at"),
        Index("ix_reward_claims_rule_day", "tenant_id", "patient_id", "rule_id", "status", "day"),
    )

    seq: Mapped[int] = mapped_column(_SEQ, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(128))
    patient_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(32))
    rule_id: Mapped[str] = mapped_column(String(64))
    #: awarded | denied | recorded (a streak day that does not pay yet)
    status: Mapped[str] = mapped_column(String(16))
    #: The message code: reward_awarded, reward_streak_progress, or the denial reason.
    reason: Mapped[str] = mapped_column(String(48))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    amount: Mapped[str] = mapped_column(String(80), default="0")
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: The activity's calendar day in HEALTRACE_REWARDS__TIMEZONE (daily caps, streaks).
    day: Mapped[str] = mapped_column(String(10))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: SHA-256 of the claim as submitted, so a reused event id with other content is caught.
    request_hash: Mapped[str] = mapped_column(String(64))
    #: Set on claims that passed the value checks; duplicates of it are denied.
    fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: Passed the value, duplicate and burst checks (counts as a streak day, paid or not).
    valid: Mapped[bool] = mapped_column(Boolean, default=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class RewardLedgerEntry(Base):
    """Append-only: an ``award`` row per paid claim, later a ``minted`` row naming the batch
    and transaction that minted it (``minted_of`` is the award's ``seq``, unique)."""

    __tablename__ = "reward_ledger"
    __table_args__ = (Index("ix_reward_ledger_patient", "tenant_id", "patient_id", "kind"),)

    seq: Mapped[int] = mapped_column(_SEQ, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    tenant_id: Mapped[str] = mapped_column(String(64))
    patient_id: Mapped[str] = mapped_column(String(64))
    claim_id: Mapped[str] = mapped_column(String(32))
    rule_id: Mapped[str] = mapped_column(String(64))
    amount: Mapped[str] = mapped_column(String(80))
    minted_of: Mapped[int | None] = mapped_column(BigInteger, nullable=True, unique=True)
    batch_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    tx_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class MintBatchRow(Base):
    """A group of awards minted by one ``mintBatch``; written before anything is sent, its
    on-chain ``chain_batch_id`` is keccak of the row id, so a resend reuses it."""

    __tablename__ = "reward_mint_batches"
    __table_args__ = (Index("ix_reward_mint_batches_status", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    chain_batch_id: Mapped[str] = mapped_column(String(66), unique=True)
    #: built | sent | minted
    status: Mapped[str] = mapped_column(String(16))
    award_count: Mapped[int] = mapped_column(Integer)
    total: Mapped[str] = mapped_column(String(80))
    tx_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    block_number: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    minted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class MintBatchItem(Base):
    """An award in a batch (an award joins one batch only) and the address it is paid to."""

    __tablename__ = "reward_mint_items"

    award_seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    batch_id: Mapped[str] = mapped_column(String(32), index=True)
    address: Mapped[str] = mapped_column(String(42))
    amount: Mapped[str] = mapped_column(String(80))
