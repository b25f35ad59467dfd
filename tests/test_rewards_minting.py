"""Minting awards as HealthToken: outages, crashes after sending, dropped transactions —
nothing minted twice, nothing lost; and against a real anvil node the on-chain balances
equal the ledger."""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from sqlalchemy import select

from healtrace.chain.client import ANVIL_DEV_KEY, ChainRejected, ChainUnavailable
from healtrace.chain.node import AnvilNode, ensure_contracts, find_anvil
from healtrace.config import ChainConfig, Settings
from healtrace.rewards import (
    DictAddresses,
    FakeTokenMinter,
    MintBatcher,
    RewardsService,
    TokenMinter,
    Web3TokenMinter,
)
from healtrace.rewards.models import MintBatchRow
from healtrace.storage import Database
from tests.test_rewards_engine import (
    TOKEN,
    Clock,
    event,
    new_tenant,
    open_service,
    rules_for_tests,
)

PATIENTS = ["p1", "p2", "p3"]


def _addresses(tenant: str, patients: Sequence[str] = PATIENTS) -> DictAddresses:
    return DictAddresses({(tenant, p): Account.create().address for p in patients})


_READINGS = itertools.count()


async def _award(svc: RewardsService, tenant: str, patients: Sequence[str] = PATIENTS) -> None:
    """Two awards per patient: a check-in (1) and a glucose reading (0.5)."""
    for p in patients:
        assert (await svc.claim(event(tenant, patient=p))).awarded
        value = 5 + next(_READINGS) % 1000 / 1000
        reading = event(tenant, "glucose_reading", patient=p, value=value)
        assert (await svc.claim(reading)).awarded


def _batcher(
    svc: RewardsService, minter: TokenMinter, addresses: DictAddresses, **config: Any
) -> MintBatcher:
    cfg = svc.config.model_copy(update={"retry_base_s": 0.01, "retry_max_s": 0.05, **config})
    return MintBatcher(svc.ledger, minter, addresses, cfg)


async def _assert_ledger_matches(
    svc: RewardsService, tenant: str, addresses: DictAddresses, minter: TokenMinter
) -> None:
    for (t, patient), address in addresses.addresses.items():
        balance = await svc.balance(t, patient)
        assert t == tenant
        assert balance.pending == 0
        assert await minter.balance_of(address) == balance.minted == balance.awarded


async def _true(value: bool) -> bool:
    return value


async def _all_minted(svc: RewardsService) -> bool:
    return (await svc.ledger.pending())[0] == 0 and not await svc.ledger.unfinished()


async def _until(check: Callable[[], Awaitable[bool]], tries: int = 3000) -> None:
    """Poll (the batcher runs in its own task); no time is asserted, only the outcome."""
    for _ in range(tries):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the batcher never got there")


@pytest.fixture
async def svc(settings: Settings) -> AsyncIterator[RewardsService]:
    db, service = await open_service(settings.resolved_database_url, settings, Clock())
    try:
        yield service
    finally:
        await db.dispose()


async def test_an_outage_then_catch_up(svc: RewardsService) -> None:
    t = new_tenant()
    addresses = _addresses(t)
    minter = FakeTokenMinter(down=True)
    batcher = _batcher(svc, minter, addresses, mint_max_batch=4)
    await _award(svc, t)
    with pytest.raises(ChainUnavailable):
        await batcher.run_once(force=True)
    assert (await svc.ledger.pending())[0] == 6
    minter.down = False
    assert await batcher.run_once(force=True) == 2  # 6 awards, 4 per batch
    assert minter.transactions == 2 and batcher.awards_minted == 6
    await _assert_ledger_matches(svc, t, addresses, minter)
    history = await svc.history(t, "p1")
    assert {i.mint for i in history.items} == {"minted"} and all(i.tx_hash for i in history.items)
    assert await batcher.run_once(force=True) == 0


async def test_the_background_task_backs_off_and_catches_up(svc: RewardsService) -> None:
    t = new_tenant()
    addresses = _addresses(t)
    minter = FakeTokenMinter(down=True)
    batcher = _batcher(svc, minter, addresses, mint_batch_size=1)
    batcher.start()
    try:
        await _award(svc, t)
        batcher.notify()
        await _until(lambda: _true(batcher.retries >= 3))
        assert "unavailable" in batcher.last_error
        minter.down = False
        await _until(lambda: _all_minted(svc))
    finally:
        await batcher.aclose()
    await _assert_ledger_matches(svc, t, addresses, minter)


class _CrashAfterSend:
    """A minter whose process 'dies' right after the node accepted the transaction."""

    def __init__(self, inner: FakeTokenMinter) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def mint_batch(self, batch_id: bytes, recipients: Any, amounts: Any) -> str:
        await self.inner.mint_batch(batch_id, recipients, amounts)
        raise _Crash


class _Crash(Exception):
    pass


async def test_a_crash_after_sending_never_mints_twice(svc: RewardsService) -> None:
    t = new_tenant()
    addresses = _addresses(t)
    minter = FakeTokenMinter()
    await _award(svc, t)
    crashing = _batcher(svc, _CrashAfterSend(minter), addresses)  # type: ignore[arg-type]
    with pytest.raises(_Crash):
        await crashing.run_once(force=True)
    assert minter.transactions == 1
    (batch,) = await svc.ledger.unfinished()
    assert batch.status == "built" and batch.tx_hash is None  # the send was never recorded
    restarted = _batcher(svc, minter, addresses)
    assert await restarted.run_once(force=True) == 1
    assert minter.transactions == 1  # asked batchMinted, did not resend
    await _assert_ledger_matches(svc, t, addresses, minter)


async def test_a_dropped_transaction_is_sent_again(svc: RewardsService) -> None:
    t = new_tenant()
    addresses = _addresses(t)
    minter = FakeTokenMinter(drop_next=1)
    batcher = _batcher(svc, minter, addresses)
    await _award(svc, t)
    with pytest.raises(ChainUnavailable, match="not mined"):
        await batcher.run_once(force=True)
    (batch,) = await svc.ledger.unfinished()
    assert batch.status == "sent" and batch.tx_hash
    assert await batcher.run_once() == 1
    assert minter.transactions == 2 and len(minter.minted_batches) == 1
    await _assert_ledger_matches(svc, t, addresses, minter)


async def test_a_rejected_batch_is_kept_with_its_error(svc: RewardsService) -> None:
    t = new_tenant()
    addresses = _addresses(t)
    minter = FakeTokenMinter(cap=TOKEN)
    batcher = _batcher(svc, minter, addresses)
    await _award(svc, t)
    with pytest.raises(ChainRejected, match="Cap"):
        await batcher.run_once(force=True)

    def errors(s: Any) -> list[str]:
        return [b.last_error for b in s.scalars(select(MintBatchRow))]

    assert "ERC20ExceededCap" in (await svc.db.run(errors))[0]
    minter.cap = 10**30
    assert await batcher.run_once() == 1
    await _assert_ledger_matches(svc, t, addresses, minter)


async def test_patients_without_an_address_wait_without_blocking_others(
    svc: RewardsService,
) -> None:
    t = new_tenant()
    addresses = _addresses(t, ["p1"])
    minter = FakeTokenMinter()
    batcher = _batcher(svc, minter, addresses, mint_max_batch=2)
    await _award(svc, t, ["p2", "p2", "p1"])  # p2 first: two days' worth, no address
    assert await batcher.run_once(force=True) == 1
    assert batcher.unaddressed == 4
    assert (await svc.balance(t, "p1")).pending == 0
    assert (await svc.balance(t, "p2")).pending > 0


async def test_the_service_runs_the_batcher(settings: Settings) -> None:
    t = new_tenant()
    addresses = _addresses(t)
    db = Database(settings.resolved_database_url)
    await db.migrate()
    minter = FakeTokenMinter()
    config = {"mint_batch_size": 3, "mint_interval_s": 0.05, "burst_max_events": 1000}
    cfg = settings.rewards.model_copy(update=config)
    svc = RewardsService(
        settings.model_copy(update={"rewards": cfg}),
        db,
        minter,
        addresses,
        rules=rules_for_tests(),
        clock=Clock(),
    )
    svc.start()
    try:
        await _award(svc, t)
        await _until(lambda: _all_minted(svc))
    finally:
        await svc.aclose()
        await db.dispose()
    assert sum(minter.balances.values()) == 3 * (TOKEN + TOKEN // 2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.e2e
async def test_minted_balances_on_anvil_equal_the_ledger(
    svc: RewardsService, tmp_path: Path
) -> None:
    node = AnvilNode(find_anvil(), _free_port(), tmp_path / "anvil" / "state.json")
    await node.start()
    minter = None
    try:
        deployment = await ensure_contracts(
            ChainConfig(rpc_url=node.url), node.url, ANVIL_DEV_KEY, tmp_path / "chain.json"
        )
        minter = Web3TokenMinter(node.url, deployment.token, ANVIL_DEV_KEY)
        t = new_tenant()
        patients = [f"p{i}" for i in range(5)]
        addresses = _addresses(t, patients)
        await _award(svc, t, patients)
        batcher = _batcher(svc, minter, addresses, mint_max_batch=4)
        assert await batcher.run_once(force=True) == 3  # 10 awards, 4 per batch
        await _assert_ledger_matches(svc, t, addresses, minter)
        # A batch sent by a process that died before recording it is not minted again.
        await _award(svc, t, patients[:2])
        crashing = _batcher(svc, _CrashAfterSend(minter), addresses)  # type: ignore[arg-type]
        with pytest.raises(_Crash):
            await crashing.run_once(force=True)
        (batch,) = await svc.ledger.unfinished()
        assert await minter.batch_minted(batch.chain_batch_id)
        assert await batcher.run_once() == 1
        await _assert_ledger_matches(svc, t, addresses, minter)
        with pytest.raises(ChainRejected, match="would revert"):
            some = next(iter(addresses.addresses.values()))
            await minter.mint_batch(batch.chain_batch_id, [some], [1])
    finally:
        if minter is not None:
            await minter.aclose()
        node.stop()
