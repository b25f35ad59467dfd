"""Everything rewards needs at run time, built from settings: rules, engine, ledger, batcher."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from healtrace.config import Settings
from healtrace.rewards.addresses import PatientAddresses
from healtrace.rewards.batcher import MintBatcher
from healtrace.rewards.engine import ClaimResult, RewardEngine, RewardEvent
from healtrace.rewards.ledger import Balance, HistoryPage, RewardsLedger
from healtrace.rewards.minter import TokenMinter
from healtrace.rewards.rules import RuleSet, load_rules
from healtrace.storage import Database
from healtrace.storage.models import utcnow

__all__ = ["RewardsService"]

#: Most history entries in one page.
MAX_PAGE = 100


class RewardsService:
    """Claims, balances, history and minting.

    ``minter`` and ``addresses`` may be None (no chain): awards are then kept pending in
    the ledger. With both given and ``HEALTRACE_REWARDS__MINTING`` on, :meth:`start` runs
    the mint batcher until :meth:`aclose`.
    """

    def __init__(
        self,
        settings: Settings,
        db: Database,
        minter: TokenMinter | None = None,
        addresses: PatientAddresses | None = None,
        *,
        rules: RuleSet | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.config = settings.rewards
        self.db = db
        self.rules = rules if rules is not None else load_rules(self.config.rules_path)
        self.engine = RewardEngine(db, self.rules, self.config, clock=clock)
        self.ledger = RewardsLedger(db)
        self.minter = minter
        self.batcher: MintBatcher | None = None
        if minter is not None and addresses is not None and self.config.minting:
            self.batcher = MintBatcher(self.ledger, minter, addresses, self.config)

    def start(self) -> None:
        if self.batcher is not None:
            self.batcher.start()

    async def aclose(self) -> None:
        """Stop the batcher. The minter belongs to whoever made it."""
        if self.batcher is not None:
            await self.batcher.aclose()

    async def claim(self, event: RewardEvent) -> ClaimResult:
        """Judge ``event`` (see :class:`RewardEngine`); an award wakes the batcher."""
        result = await self.engine.claim(event)
        if result.awarded and not result.replayed and self.batcher is not None:
            self.batcher.notify()
        return result

    async def balance(self, tenant_id: str, patient_id: str) -> Balance:
        return await self.ledger.balance(tenant_id, patient_id)

    async def history(
        self, tenant_id: str, patient_id: str, *, limit: int = 20, before: int | None = None
    ) -> HistoryPage:
        limit = max(1, min(limit, MAX_PAGE))
        return await self.ledger.history(tenant_id, patient_id, limit=limit, before=before)
