"""Reading the rewards ledger (balances, history) and the mint batches built from it.

The ledger is append-only: an ``award`` row when a claim pays, a ``minted`` row when the
batch holding that award is mined. Batches and their members are written before anything
is sent, so after a crash the batcher knows exactly what it may have sent.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from eth_utils.crypto import keccak
from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from healtrace.rewards.engine import ClaimResult, _aware, _result
from healtrace.rewards.models import (
    MintBatchItem,
    MintBatchRow,
    RewardClaim,
    RewardLedgerEntry,
)
from healtrace.storage import Database
from healtrace.storage.models import utcnow

__all__ = [
    "Balance",
    "HistoryItem",
    "HistoryPage",
    "MintBatchInfo",
    "PendingAward",
    "RewardsLedger",
    "chain_batch_id",
]


def chain_batch_id(row_id: str) -> bytes:
    """The ``bytes32`` batch id sent to ``mintBatch`` for the batch row ``row_id``."""
    return keccak(f"healtrace:rewards:mint-batch:{row_id}".encode())


@dataclass(frozen=True, slots=True)
class Balance:
    """A patient's tokens in the smallest unit: everything awarded, split into what is
    minted on chain and what is still pending."""

    tenant_id: str
    patient_id: str
    awarded: int
    minted: int
    awards: int

    @property
    def pending(self) -> int:
        return self.awarded - self.minted


@dataclass(frozen=True, slots=True)
class HistoryItem:
    seq: int
    claim: ClaimResult
    #: For awards: pending (not yet minted) or minted; None for other decisions.
    mint: Literal["pending", "minted"] | None
    tx_hash: str | None


@dataclass(frozen=True, slots=True)
class HistoryPage:
    items: list[HistoryItem]
    #: Pass as ``before`` for the next (older) page; None: this was the last page.
    next_before: int | None


@dataclass(frozen=True, slots=True)
class PendingAward:
    seq: int
    tenant_id: str
    patient_id: str
    amount: int


@dataclass(frozen=True, slots=True)
class MintBatchInfo:
    id: str
    chain_batch_id: bytes
    status: str
    award_count: int
    total: int
    tx_hash: str | None
    attempts: int


def _batch_info(row: MintBatchRow) -> MintBatchInfo:
    return MintBatchInfo(
        id=row.id,
        chain_batch_id=bytes.fromhex(row.chain_batch_id[2:]),
        status=row.status,
        award_count=row.award_count,
        total=int(row.total),
        tx_hash=row.tx_hash,
        attempts=row.attempts,
    )


def _unbatched() -> tuple[ColumnElement[bool], ...]:
    return (
        RewardLedgerEntry.kind == "award",
        ~select(MintBatchItem.award_seq)
        .where(MintBatchItem.award_seq == RewardLedgerEntry.seq)
        .exists(),
    )


class RewardsLedger:
    """Queries and batch bookkeeping; every method is one short transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def balance(self, tenant_id: str, patient_id: str) -> Balance:
        def query(s: Session) -> Balance:
            rows = s.execute(
                select(RewardLedgerEntry.kind, RewardLedgerEntry.amount).where(
                    RewardLedgerEntry.tenant_id == tenant_id,
                    RewardLedgerEntry.patient_id == patient_id,
                )
            ).all()
            awarded = sum(int(a) for kind, a in rows if kind == "award")
            minted = sum(int(a) for kind, a in rows if kind == "minted")
            count = sum(1 for kind, _a in rows if kind == "award")
            return Balance(tenant_id, patient_id, awarded, minted, count)

        return await self.db.run(query)

    async def history(
        self, tenant_id: str, patient_id: str, *, limit: int = 20, before: int | None = None
    ) -> HistoryPage:
        """The patient's decisions, newest first, ``limit`` per page."""

        def query(s: Session) -> HistoryPage:
            stmt = select(RewardClaim).where(
                RewardClaim.tenant_id == tenant_id, RewardClaim.patient_id == patient_id
            )
            if before is not None:
                stmt = stmt.where(RewardClaim.seq < before)
            rows = list(s.scalars(stmt.order_by(RewardClaim.seq.desc()).limit(limit + 1)))
            more = len(rows) > limit
            rows = rows[:limit]
            awarded = [r.id for r in rows if r.status == "awarded"]
            minted: dict[str, str | None] = {}
            if awarded:
                for claim_id, tx in s.execute(
                    select(RewardLedgerEntry.claim_id, RewardLedgerEntry.tx_hash).where(
                        RewardLedgerEntry.kind == "minted",
                        RewardLedgerEntry.claim_id.in_(awarded),
                    )
                ):
                    minted[claim_id] = tx
            items = [
                HistoryItem(
                    seq=r.seq,
                    claim=_result(r, replayed=False),
                    mint=None
                    if r.status != "awarded"
                    else ("minted" if r.id in minted else "pending"),
                    tx_hash=minted.get(r.id),
                )
                for r in rows
            ]
            return HistoryPage(items, rows[-1].seq if more and rows else None)

        return await self.db.run(query)

    # -- mint batches ------------------------------------------------------------------

    async def pending(self) -> tuple[int, datetime | None]:
        """How many awards wait for a batch, and when the oldest was paid."""

        def query(s: Session) -> tuple[int, datetime | None]:
            count, oldest = s.execute(
                select(func.count(), func.min(RewardLedgerEntry.created_at)).where(*_unbatched())
            ).one()
            return int(count or 0), None if oldest is None else _aware(oldest)

        return await self.db.run(query)

    async def pending_awards(self, limit: int) -> list[PendingAward]:
        """The oldest awards not in any batch."""

        def query(s: Session) -> list[PendingAward]:
            rows = s.execute(
                select(
                    RewardLedgerEntry.seq,
                    RewardLedgerEntry.tenant_id,
                    RewardLedgerEntry.patient_id,
                    RewardLedgerEntry.amount,
                )
                .where(*_unbatched())
                .order_by(RewardLedgerEntry.seq)
                .limit(limit)
            ).all()
            return [PendingAward(r.seq, r.tenant_id, r.patient_id, int(r.amount)) for r in rows]

        return await self.db.run(query)

    async def form_batch(self, members: list[tuple[PendingAward, str]]) -> MintBatchInfo | None:
        """Record a batch of ``(award, address)`` before anything is sent; None when another
        batcher took one of the awards first."""
        if not members:
            return None

        def form(s: Session) -> MintBatchInfo:
            row_id = uuid.uuid4().hex
            row = MintBatchRow(
                id=row_id,
                chain_batch_id="0x" + chain_batch_id(row_id).hex(),
                status="built",
                award_count=len(members),
                total=str(sum(a.amount for a, _addr in members)),
                attempts=0,
                last_error="",
                created_at=utcnow(),
            )
            s.add(row)
            s.add_all(
                MintBatchItem(award_seq=a.seq, batch_id=row_id, address=addr, amount=str(a.amount))
                for a, addr in members
            )
            s.flush()
            return _batch_info(row)

        try:
            return await self.db.run(form)
        except IntegrityError:
            return None

    async def unfinished(self) -> list[MintBatchInfo]:
        """Batches recorded but not yet known to be minted, oldest first."""

        def query(s: Session) -> list[MintBatchInfo]:
            rows = s.scalars(
                select(MintBatchRow)
                .where(MintBatchRow.status != "minted")
                .order_by(MintBatchRow.created_at, MintBatchRow.id)
            )
            return [_batch_info(r) for r in rows]

        return await self.db.run(query)

    async def transfers(self, batch_id: str) -> tuple[list[str], list[int]]:
        """The batch's recipients and amounts, one entry per address, in award order (the
        same every time, so a resend sends the identical call)."""

        def query(s: Session) -> list[tuple[str, str]]:
            return [
                (r.address, r.amount)
                for r in s.execute(
                    select(MintBatchItem.address, MintBatchItem.amount)
                    .where(MintBatchItem.batch_id == batch_id)
                    .order_by(MintBatchItem.award_seq)
                )
            ]

        totals: dict[str, int] = {}
        for address, amount in await self.db.run(query):
            totals[address] = totals.get(address, 0) + int(amount)
        return list(totals), list(totals.values())

    async def mark_sent(self, batch_id: str, tx_hash: str) -> None:
        await self.db.run(
            lambda s: s.execute(
                update(MintBatchRow)
                .where(MintBatchRow.id == batch_id, MintBatchRow.status != "minted")
                .values(
                    status="sent",
                    tx_hash=tx_hash,
                    attempts=MintBatchRow.attempts + 1,
                    last_error="",
                )
            )
        )

    async def mark_error(self, batch_id: str, error: str) -> None:
        await self.db.run(
            lambda s: s.execute(
                update(MintBatchRow)
                .where(MintBatchRow.id == batch_id)
                .values(last_error=error[:300])
            )
        )

    async def mark_minted(self, batch_id: str, tx_hash: str | None, block: int | None) -> int:
        """Record the batch as minted and append a ``minted`` row per award; returns the
        number of awards newly marked (0 when it was marked before)."""

        def write(s: Session) -> int:
            done = s.execute(
                update(MintBatchRow)
                .where(MintBatchRow.id == batch_id, MintBatchRow.status != "minted")
                .values(
                    status="minted",
                    tx_hash=tx_hash,
                    block_number=block,
                    minted_at=utcnow(),
                    last_error="",
                )
            )
            if getattr(done, "rowcount", 1) != 1:
                return 0
            awards = s.execute(
                select(RewardLedgerEntry)
                .join(MintBatchItem, MintBatchItem.award_seq == RewardLedgerEntry.seq)
                .where(MintBatchItem.batch_id == batch_id)
                .order_by(RewardLedgerEntry.seq)
            ).scalars()
            now = utcnow()
            count = 0
            for award in list(awards):
                s.add(
                    RewardLedgerEntry(
                        kind="minted",
                        tenant_id=award.tenant_id,
                        patient_id=award.patient_id,
                        claim_id=award.claim_id,
                        rule_id=award.rule_id,
                        amount=award.amount,
                        minted_of=award.seq,
                        batch_id=batch_id,
                        tx_hash=tx_hash,
                        created_at=now,
                    )
                )
                count += 1
            return count

        return await self.db.run(write)

    async def minted_totals(self) -> dict[str, int]:
        """Minted tokens per address (from the batches), to compare with the chain."""

        def query(s: Session) -> list[tuple[str, str]]:
            return [
                (r.address, r.amount)
                for r in s.execute(
                    select(MintBatchItem.address, MintBatchItem.amount)
                    .join(MintBatchRow, MintBatchRow.id == MintBatchItem.batch_id)
                    .where(MintBatchRow.status == "minted")
                )
            ]

        totals: dict[str, int] = {}
        for address, amount in await self.db.run(query):
            totals[address] = totals.get(address, 0) + int(amount)
        return totals
