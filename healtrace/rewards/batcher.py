"""The batcher that mints awards as HealthToken (:mod:`healtrace.rewards.ledger`).

1. **Forms a batch** when ``mint_batch_size`` awards wait or the oldest has waited
   ``mint_interval_s``: it resolves each patient's address, then in one transaction records
   the batch row and its members (an award can join one batch only). The on-chain batch id
   is keccak of the row id, fixed before anything is sent.
2. **Mints** each unfinished batch with one ``mintBatch``. Before (re)sending it asks
   ``batchMinted(batchId)`` — a crash between sending and recording leaves a batch that may
   already be minted — and the contract itself refuses a batch id twice, so nothing is
   minted twice and nothing recorded is lost, whatever is killed when.
3. **Records** the mint: the batch is marked and a ``minted`` ledger row is appended for
   each of its awards.

When the node is unreachable the batcher waits with exponential backoff; claims keep being
judged and awards keep queueing meanwhile.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from eth_utils.address import is_address, to_checksum_address

from healtrace.chain.client import ChainRejected, ChainUnavailable
from healtrace.chain.worker import RetryingWorker
from healtrace.rewards.addresses import PatientAddresses
from healtrace.rewards.config import RewardsConfig
from healtrace.rewards.ledger import MintBatchInfo, PendingAward, RewardsLedger
from healtrace.rewards.minter import TokenMinter
from healtrace.storage.models import utcnow

__all__ = ["MintBatcher"]

log = logging.getLogger(__name__)


class MintBatcher(RetryingWorker):
    """Forms mint batches from the ledger and mints them, in one owned background task."""

    task_name = "healtrace-mint-batcher"
    what = "minting"

    def __init__(
        self,
        ledger: RewardsLedger,
        minter: TokenMinter,
        addresses: PatientAddresses,
        config: RewardsConfig,
    ) -> None:
        super().__init__(retry_base_s=config.retry_base_s, retry_max_s=config.retry_max_s)
        self.ledger = ledger
        self.minter = minter
        self.addresses = addresses
        self.config = config
        #: Counters for status pages and tests.
        self.batches_minted = 0
        self.awards_minted = 0
        #: Awards skipped in the last round because their patient has no address yet.
        self.unaddressed = 0

    @property
    def _tick_s(self) -> float:
        return min(max(self.config.mint_interval_s / 4, 0.05), 5.0)

    async def _due(self, force: bool) -> bool:
        count, oldest = await self.ledger.pending()
        if count == 0:
            return False
        if force or count >= self.config.mint_batch_size:
            return True
        if oldest is None:
            return False
        return utcnow() - oldest >= timedelta(seconds=self.config.mint_interval_s)

    async def run_once(self, *, force: bool = False) -> int:
        """Mint unfinished batches, then form and mint due ones; return batches minted.

        ``force`` mints whatever waits, due or not (tests, an operator's flush).
        """
        unfinished = await self.ledger.unfinished()
        if not unfinished and not await self._due(force):
            # Nothing to mint: do not reach for the chain (an idle service never starts it).
            return 0
        if not self._connected:
            await self.minter.connect()
            self._connected = True
        minted = 0
        for batch in unfinished:
            await self._mint(batch)
            minted += 1
        while await self._due(force):
            formed = await self._form()
            if formed is None:
                break
            await self._mint(formed)
            minted += 1
        return minted

    async def _form(self) -> MintBatchInfo | None:
        limit = self.config.mint_max_batch
        # Look past awards whose patient has no address yet, so they cannot block others.
        waiting = await self.ledger.pending_awards(limit * 4)
        resolved: dict[tuple[str, str], str | None] = {}
        members: list[tuple[PendingAward, str]] = []
        skipped = 0
        for award in waiting:
            key = (award.tenant_id, award.patient_id)
            if key not in resolved:
                resolved[key] = await self._address(*key)
            address = resolved[key]
            if address is None:
                skipped += 1
                continue
            members.append((award, address))
            if len(members) >= limit:
                break
        self.unaddressed = skipped
        return await self.ledger.form_batch(members)

    async def _address(self, tenant_id: str, patient_id: str) -> str | None:
        try:
            address = await self.addresses.address_of(tenant_id, patient_id)
        except LookupError as exc:
            log.info("rewards of patient %s wait for an address: %s", patient_id, exc)
            return None
        if not is_address(address):
            log.error("patient %s has an invalid reward address %r", patient_id, address)
            return None
        return str(to_checksum_address(address))

    async def _mint(self, batch: MintBatchInfo) -> None:
        batch_id = batch.chain_batch_id
        if await self.minter.batch_minted(batch_id):
            # Minted before a crash or a time-out, by the transaction we recorded (if any).
            await self._record(batch, batch.tx_hash, None)
            return
        if batch.tx_hash:
            tx = await self.minter.wait_mined(batch.tx_hash)
            if tx is not None:
                await self._record(batch, tx.tx_hash, tx.block_number)
                return
        recipients, amounts = await self.ledger.transfers(batch.id)
        try:
            tx_hash = await self.minter.mint_batch(batch_id, recipients, amounts)
        except ChainRejected as exc:
            if await self.minter.batch_minted(batch_id):
                # A transaction we lost track of got there first.
                await self._record(batch, batch.tx_hash, None)
                return
            await self.ledger.mark_error(batch.id, str(exc))
            raise
        await self.ledger.mark_sent(batch.id, tx_hash)
        tx = await self.minter.wait_mined(tx_hash)
        if tx is None:
            if await self.minter.batch_minted(batch_id):
                await self._record(batch, None, None)
                return
            raise ChainUnavailable(f"mint transaction {tx_hash} was not mined")
        await self._record(batch, tx.tx_hash, tx.block_number)

    async def _record(self, batch: MintBatchInfo, tx_hash: str | None, block: int | None) -> None:
        awards = await self.ledger.mark_minted(batch.id, tx_hash, block)
        self.batches_minted += 1
        self.awards_minted += awards
        self.last_error = ""
        log.info("minted %d reward awards in batch %s (tx %s)", awards, batch.id, tx_hash)
