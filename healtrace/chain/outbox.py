"""The evidence outbox: records written with their answers, batches, and receipts.

Every answer's evidence record is inserted in the same database transaction as the answer
(:func:`add_evidence`), so a record exists exactly when its answer does. The anchoring
batcher (:mod:`healtrace.chain.anchoring`) forms batches from it and records where each
batch was anchored; receipts are read back from here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from healtrace.chain.evidence import EvidenceRecord, canonical_json, parse_record, record_hash
from healtrace.chain.merkle import MerkleTree
from healtrace.chain.receipt import Receipt, make_receipt
from healtrace.errors import ConflictError, NotFoundError
from healtrace.storage import AnchorBatch, Database, EvidenceRow
from healtrace.storage.models import utcnow

if TYPE_CHECKING:
    from healtrace.chain.client import AnchorTx

__all__ = [
    "AnchoredRecord",
    "BatchInfo",
    "EvidenceOutbox",
    "EvidenceStatus",
    "add_evidence",
]


def add_evidence(s: Session, record: EvidenceRecord) -> str:
    """Insert ``record`` into the outbox inside the caller's transaction; return its hash."""
    leaf = "0x" + record_hash(record).hex()
    s.execute(
        insert(EvidenceRow).values(
            record_hash=leaf,
            message_id=record.message_id,
            session_id=record.session_id,
            tenant_id=record.tenant_id,
            record=canonical_json(record).decode("utf-8"),
            created_at=utcnow(),
        )
    )
    return leaf


@dataclass(frozen=True, slots=True)
class BatchInfo:
    id: str
    root: str
    leaf_count: int
    status: str
    tx_hash: str | None
    attempts: int


@dataclass(frozen=True, slots=True)
class AnchoredRecord:
    """One record of a batch that was just anchored (what ``evidence_anchored`` says)."""

    session_id: str
    message_id: str
    record_hash: str
    root: str
    tx_hash: str
    block_number: int
    chain_id: int
    contract: str


@dataclass(frozen=True, slots=True)
class EvidenceStatus:
    record_hash: str
    message_id: str
    session_id: str
    tenant_id: str
    #: pending (no batch yet) | batched (in a batch being anchored) | anchored
    status: str
    record: EvidenceRecord


def _batch_info(row: AnchorBatch) -> BatchInfo:
    return BatchInfo(row.id, row.root, row.leaf_count, row.status, row.tx_hash, row.attempts)


class EvidenceOutbox:
    """The outbox tables; every method is one short transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._trees: dict[str, MerkleTree] = {}

    async def pending(self) -> tuple[int, datetime | None]:
        """How many records wait for a batch, and when the oldest was written."""

        def query(s: Session) -> tuple[int, datetime | None]:
            count, oldest = s.execute(
                select(func.count(), func.min(EvidenceRow.created_at)).where(
                    EvidenceRow.batch_id.is_(None)
                )
            ).one()
            return int(count or 0), oldest

        return await self.db.run(query)

    async def form_batch(self, max_leaves: int) -> BatchInfo | None:
        """Put the oldest waiting records (up to ``max_leaves``) into a new batch."""

        def form(s: Session) -> BatchInfo | None:
            rows = s.execute(
                select(EvidenceRow.seq, EvidenceRow.record_hash)
                .where(EvidenceRow.batch_id.is_(None))
                .order_by(EvidenceRow.seq)
                .limit(max_leaves)
            ).all()
            if not rows:
                return None
            tree = MerkleTree([bytes.fromhex(h[2:]) for _seq, h in rows])
            batch = AnchorBatch(
                id=uuid.uuid4().hex,
                root="0x" + tree.root.hex(),
                leaf_count=len(rows),
                status="built",
                attempts=0,
                last_error="",
            )
            s.add(batch)
            s.flush()
            for index, (seq, _hash) in enumerate(rows):
                claimed = s.execute(
                    update(EvidenceRow)
                    .where(EvidenceRow.seq == seq, EvidenceRow.batch_id.is_(None))
                    .values(batch_id=batch.id, leaf_index=index)
                )
                if getattr(claimed, "rowcount", 1) != 1:
                    # Another batcher took it first: give up this batch (rolled back).
                    raise ConflictError("evidence record already batched", code="evidence_busy")
            return _batch_info(batch)

        try:
            return await self.db.run(form)
        except ConflictError:
            return None

    async def unfinished(self) -> list[BatchInfo]:
        """Batches formed but not yet recorded as anchored, oldest first."""

        def query(s: Session) -> list[BatchInfo]:
            rows = s.scalars(
                select(AnchorBatch)
                .where(AnchorBatch.status != "anchored")
                .order_by(AnchorBatch.created_at, AnchorBatch.id)
            )
            return [_batch_info(r) for r in rows]

        return await self.db.run(query)

    async def mark_sent(self, batch_id: str, tx_hash: str) -> None:
        await self.db.run(
            lambda s: s.execute(
                update(AnchorBatch)
                .where(AnchorBatch.id == batch_id)
                .values(
                    status="sent",
                    tx_hash=tx_hash,
                    attempts=AnchorBatch.attempts + 1,
                    last_error="",
                )
            )
        )

    async def mark_error(self, batch_id: str, error: str) -> None:
        await self.db.run(
            lambda s: s.execute(
                update(AnchorBatch).where(AnchorBatch.id == batch_id).values(last_error=error[:300])
            )
        )

    async def mark_anchored(
        self, batch: BatchInfo, tx: AnchorTx, *, chain_id: int, contract: str
    ) -> list[AnchoredRecord]:
        """Record the anchoring; return the batch's records for ``evidence_anchored``."""

        def write(s: Session) -> list[AnchoredRecord]:
            s.execute(
                update(AnchorBatch)
                .where(AnchorBatch.id == batch.id)
                .values(
                    status="anchored",
                    tx_hash=tx.tx_hash,
                    block_number=tx.block_number,
                    gas_used=tx.gas_used,
                    chain_id=chain_id,
                    contract=contract,
                    anchored_at=tx.anchored_at,
                    last_error="",
                )
            )
            rows = s.execute(
                select(EvidenceRow.session_id, EvidenceRow.message_id, EvidenceRow.record_hash)
                .where(EvidenceRow.batch_id == batch.id)
                .order_by(EvidenceRow.leaf_index)
            ).all()
            return [
                AnchoredRecord(
                    session_id=r.session_id,
                    message_id=r.message_id,
                    record_hash=r.record_hash,
                    root=batch.root,
                    tx_hash=tx.tx_hash,
                    block_number=tx.block_number,
                    chain_id=chain_id,
                    contract=contract,
                )
                for r in rows
            ]

        return await self.db.run(write)

    async def status(self, leaf: str) -> EvidenceStatus:
        """Where the record with hash ``leaf`` stands; NotFoundError(evidence_not_found)."""

        def query(s: Session) -> EvidenceStatus | None:
            row = s.execute(
                select(EvidenceRow, AnchorBatch.status)
                .outerjoin(AnchorBatch, AnchorBatch.id == EvidenceRow.batch_id)
                .where(EvidenceRow.record_hash == leaf)
            ).first()
            if row is None:
                return None
            evidence, batch_status = row
            state = (
                "pending"
                if batch_status is None
                else ("anchored" if batch_status == "anchored" else "batched")
            )
            return EvidenceStatus(
                record_hash=evidence.record_hash,
                message_id=evidence.message_id,
                session_id=evidence.session_id,
                tenant_id=evidence.tenant_id,
                status=state,
                record=parse_record(evidence.record),
            )

        found = await self.db.run(query)
        if found is None:
            raise NotFoundError(f"no evidence record {leaf}", code="evidence_not_found")
        return found

    async def receipt(self, leaf: str, *, include_record: bool = True) -> Receipt:
        """The receipt for ``leaf``; NotFoundError(evidence_not_found) or
        ConflictError(evidence_pending) while it is not anchored yet."""

        def query(s: Session) -> tuple[EvidenceRow, AnchorBatch] | None:
            row = s.execute(
                select(EvidenceRow, AnchorBatch)
                .outerjoin(AnchorBatch, AnchorBatch.id == EvidenceRow.batch_id)
                .where(EvidenceRow.record_hash == leaf)
            ).first()
            return None if row is None else (row[0], row[1])

        found = await self.db.run(query)
        if found is None:
            raise NotFoundError(f"no evidence record {leaf}", code="evidence_not_found")
        evidence, batch = found
        if batch is None or batch.status != "anchored" or evidence.leaf_index is None:
            raise ConflictError(
                f"evidence record {leaf} is not anchored yet", code="evidence_pending"
            )
        tree = await self._tree(batch.id)
        assert batch.chain_id is not None and batch.contract and batch.tx_hash
        assert batch.block_number is not None and batch.anchored_at is not None
        return make_receipt(
            parse_record(evidence.record),
            tree,
            evidence.leaf_index,
            chain_id=batch.chain_id,
            contract=batch.contract,
            tx_hash=batch.tx_hash,
            block_number=batch.block_number,
            anchored_at=batch.anchored_at,
            include_record=include_record,
        )

    async def _tree(self, batch_id: str) -> MerkleTree:
        tree = self._trees.get(batch_id)
        if tree is not None:
            return tree

        def leaves(s: Session) -> list[str]:
            return list(
                s.scalars(
                    select(EvidenceRow.record_hash)
                    .where(EvidenceRow.batch_id == batch_id)
                    .order_by(EvidenceRow.leaf_index)
                )
            )

        hashes = await self.db.run(leaves)
        tree = MerkleTree([bytes.fromhex(h[2:]) for h in hashes])
        if len(self._trees) >= 64:
            self._trees.pop(next(iter(self._trees)))
        self._trees[batch_id] = tree
        return tree
