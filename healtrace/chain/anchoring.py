"""The batcher that anchors the evidence outbox (:mod:`healtrace.chain.outbox`).

Every answer's evidence record is written with its answer. The batcher then:

1. **forms a batch** when ``batch_size`` records wait or the oldest has waited
   ``batch_interval_s``: in one transaction it takes the oldest waiting records (at most
   ``max_batch``), builds their Merkle tree, stores the batch with its root and gives each
   record its leaf index. A batch never changes its members afterwards;
2. **anchors** each unfinished batch with one ``anchor(root, leafCount, batchUri)``
   transaction. Before sending it asks the registry whether the root is already anchored
   (a crash between sending and recording), and the registry itself refuses a root twice,
   so no batch is ever anchored twice, whatever is killed when;
3. **records** the transaction and block, and reports the anchored records so the service
   can send ``evidence_anchored`` to their sessions.

When the node is unreachable the batcher waits with exponential backoff and tries again;
answers keep being written (and records keep queueing) meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

from healtrace.chain.client import ChainRejected, ChainUnavailable, RegistryChain
from healtrace.chain.outbox import AnchoredRecord, BatchInfo, EvidenceOutbox
from healtrace.chain.worker import RetryingWorker
from healtrace.config import ChainConfig
from healtrace.storage.models import utcnow

__all__ = ["AnchorBatcher", "OnAnchored"]

log = logging.getLogger(__name__)


OnAnchored = Callable[[Sequence[AnchoredRecord]], Awaitable[None]]


class AnchorBatcher(RetryingWorker):
    """Forms batches from the outbox and anchors them, in one owned background task."""

    task_name = "healtrace-anchor-batcher"
    what = "anchoring"

    def __init__(
        self,
        outbox: EvidenceOutbox,
        chain: RegistryChain,
        config: ChainConfig,
        *,
        on_anchored: OnAnchored | None = None,
    ) -> None:
        super().__init__(retry_base_s=config.retry_base_s, retry_max_s=config.retry_max_s)
        self.outbox = outbox
        self.chain = chain
        self.config = config
        self.on_anchored = on_anchored
        #: Counters for status pages and tests.
        self.batches_anchored = 0
        self.records_anchored = 0

    @property
    def _tick_s(self) -> float:
        return min(max(self.config.batch_interval_s / 4, 0.05), 2.0)

    async def _due(self, force: bool) -> bool:
        count, oldest = await self.outbox.pending()
        if count == 0:
            return False
        if force or count >= self.config.batch_size:
            return True
        if oldest is None:
            return False
        if oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=utcnow().tzinfo)
        return utcnow() - oldest >= timedelta(seconds=self.config.batch_interval_s)

    async def run_once(self, *, force: bool = False) -> int:
        """Anchor unfinished batches, then form and anchor due ones; return batches anchored.

        ``force`` anchors whatever waits, due or not (tests, ``healtrace chain flush``).
        """
        if not self._connected:
            await self.chain.connect()
            self._connected = True
        anchored = 0
        for batch in await self.outbox.unfinished():
            await self._anchor(batch)
            anchored += 1
        while await self._due(force):
            formed = await self.outbox.form_batch(self.config.max_batch)
            if formed is None:
                break
            await self._anchor(formed)
            anchored += 1
        return anchored

    async def _anchor(self, batch: BatchInfo) -> None:
        root = bytes.fromhex(batch.root[2:])
        tx = await self.chain.find_anchor(root)
        if tx is None and batch.tx_hash:
            # Sent before a restart or a time-out: it may still be mined.
            tx = await self.chain.wait_mined(batch.tx_hash)
        if tx is None:
            try:
                tx_hash = await self.chain.anchor(
                    root, batch.leaf_count, f"urn:healtrace:batch:{batch.id}"
                )
            except ChainRejected as exc:
                await self.outbox.mark_error(batch.id, str(exc))
                raise
            await self.outbox.mark_sent(batch.id, tx_hash)
            tx = await self.chain.wait_mined(tx_hash)
            if tx is None:
                # Dropped or reverted (a duplicate sent elsewhere?): ask the registry.
                tx = await self.chain.find_anchor(root)
            if tx is None:
                raise ChainUnavailable(f"anchor transaction {tx_hash} was not mined")
        records = await self.outbox.mark_anchored(
            batch, tx, chain_id=self.chain.chain_id, contract=self.chain.contract
        )
        self.batches_anchored += 1
        self.records_anchored += len(records)
        self.last_error = ""
        log.info(
            "anchored %d evidence records in block %d (gas %d)",
            len(records),
            tx.block_number,
            tx.gas_used,
        )
        if self.on_anchored is not None and records:
            await self.on_anchored(records)
