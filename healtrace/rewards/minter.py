"""Minting HealthToken: one small interface, a web3 implementation and a scripted fake.

:class:`TokenMinter` is what the mint batcher needs. :class:`Web3TokenMinter` talks
JSON-RPC to any EVM node and signs locally (eth-account) with an account holding the
token's MINTER_ROLE; :class:`FakeTokenMinter` keeps balances in memory with the contract's
rules (a batch id mints once, the cap holds, pausing stops mints) and outages on demand.

Failures are split as in :mod:`healtrace.chain.client`: ``ChainUnavailable`` is retried
with backoff, ``ChainRejected`` (no role, paused, over the cap) is the operator's problem.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import is_address, to_checksum_address
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.exceptions import (
    ContractCustomError,
    ContractLogicError,
    TimeExhausted,
    TransactionNotFound,
    Web3Exception,
)

from healtrace.chain.client import ChainRejected, ChainUnavailable, send_lock
from healtrace.chain.contracts import load_artifact

__all__ = ["DeferredMinter", "FakeTokenMinter", "MintTx", "TokenMinter", "Web3TokenMinter"]

_NETWORK_ERRORS = (OSError, TimeoutError, aiohttp.ClientError)


@dataclass(frozen=True, slots=True)
class MintTx:
    """Where a batch was minted."""

    tx_hash: str
    block_number: int
    gas_used: int


class TokenMinter(Protocol):
    """The HealthToken operations the mint batcher uses."""

    async def connect(self) -> None:
        """Check the node and the token; ChainUnavailable when unreachable."""

    async def mint_batch(
        self, batch_id: bytes, recipients: Sequence[str], amounts: Sequence[int]
    ) -> str:
        """Submit ``mintBatch(batchId, to, amounts)``; return the transaction hash."""

    async def batch_minted(self, batch_id: bytes) -> bool:
        """Whether ``batchMinted(batchId)`` is true on chain."""

    async def wait_mined(self, tx_hash: str) -> MintTx | None:
        """The mined, successful transaction; None if dropped, unknown or reverted."""

    async def balance_of(self, address: str) -> int:
        """The address's balance in the smallest unit."""

    async def aclose(self) -> None: ...


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _checked_addresses(recipients: Sequence[str]) -> list[Any]:
    bad = [r for r in recipients if not is_address(r)]
    if bad:
        raise ChainRejected(f"not an address: {bad[0]!r}")
    return [to_checksum_address(r) for r in recipients]


class Web3TokenMinter:
    """The HealthToken at ``contract`` on the node at ``rpc_url``; ``private_key`` signs
    locally and is never sent or logged. Sending shares one lock per account with the
    other senders in the process (:func:`healtrace.chain.client.send_lock`), so it may use
    the anchoring account."""

    def __init__(
        self,
        rpc_url: str,
        contract: str,
        private_key: str,
        *,
        timeout_s: float = 10.0,
        receipt_timeout_s: float = 120.0,
    ) -> None:
        self.rpc_url = rpc_url
        self._contract = to_checksum_address(contract)
        self._account: LocalAccount = Account.from_key(private_key)
        self._timeout_s = timeout_s
        self._receipt_timeout_s = receipt_timeout_s
        self._provider = AsyncHTTPProvider(
            rpc_url,
            request_kwargs={"timeout": aiohttp.ClientTimeout(total=timeout_s)},
            exception_retry_configuration=None,
        )
        self._w3: AsyncWeb3[Any] = AsyncWeb3(self._provider)
        self._token = self._w3.eth.contract(
            address=self._contract, abi=load_artifact("HealthToken").abi
        )
        self._chain_id = 0

    @property
    def contract(self) -> str:
        return str(self._contract)

    @property
    def sender(self) -> str:
        return str(self._account.address)

    async def _call(self, what: str, awaitable: Any) -> Any:
        try:
            async with asyncio.timeout(self._timeout_s):
                return await awaitable
        except _NETWORK_ERRORS as exc:
            raise ChainUnavailable(f"{what}: {type(exc).__name__}") from exc

    async def connect(self) -> None:
        self._chain_id = int(await self._call("eth_chainId", self._w3.eth.chain_id))
        code = await self._call("eth_getCode", self._w3.eth.get_code(self._contract))
        if not code:
            raise ChainRejected(
                f"no contract at {self._contract} on chain {self._chain_id}: set "
                "HEALTRACE_CHAIN__TOKEN_ADDRESS to the deployed HealthToken"
            )
        role = await self._call("MINTER_ROLE", self._token.functions.MINTER_ROLE().call())
        has = await self._call(
            "hasRole", self._token.functions.hasRole(role, self._account.address).call()
        )
        if not has:
            raise ChainRejected(
                f"account {self._account.address} lacks HealthToken's MINTER_ROLE; grant it"
            )

    async def mint_batch(
        self, batch_id: bytes, recipients: Sequence[str], amounts: Sequence[int]
    ) -> str:
        to = _checked_addresses(recipients)
        sender = self._account.address
        # Shared with every other sender of this account in the process (anchors, relayed
        # consent): nonces are taken and used under one lock.
        async with send_lock(self.rpc_url, self.sender):
            nonce = await self._call(
                "eth_getTransactionCount", self._w3.eth.get_transaction_count(sender, "pending")
            )
            try:
                tx = await self._call(
                    "eth_estimateGas",
                    self._token.functions.mintBatch(
                        batch_id, to, [int(a) for a in amounts]
                    ).build_transaction(
                        {"from": sender, "nonce": nonce, "chainId": self._chain_id}
                    ),
                )
            except (ContractCustomError, ContractLogicError) as exc:
                raise ChainRejected(f"mintBatch() would revert: {exc}") from exc
            signed = self._account.sign_transaction(tx)
            try:
                sent = await self._call(
                    "eth_sendRawTransaction",
                    self._w3.eth.send_raw_transaction(signed.raw_transaction),
                )
            except Web3Exception as exc:
                raise ChainRejected(f"node refused the transaction: {exc}") from exc
        return _hex(bytes(sent))

    async def batch_minted(self, batch_id: bytes) -> bool:
        return bool(
            await self._call("batchMinted", self._token.functions.batchMinted(batch_id).call())
        )

    async def wait_mined(self, tx_hash: str) -> MintTx | None:
        try:
            receipt = await self._w3.eth.wait_for_transaction_receipt(
                tx_hash,  # type: ignore[arg-type]
                timeout=self._receipt_timeout_s,
                poll_latency=0.2,
            )
        except (TimeExhausted, TransactionNotFound):
            return None
        except _NETWORK_ERRORS as exc:
            raise ChainUnavailable(f"waiting for {tx_hash}: {type(exc).__name__}") from exc
        if receipt["status"] != 1:
            return None
        return MintTx(tx_hash, int(receipt["blockNumber"]), int(receipt["gasUsed"]))

    async def balance_of(self, address: str) -> int:
        return int(
            await self._call(
                "balanceOf", self._token.functions.balanceOf(to_checksum_address(address)).call()
            )
        )

    async def aclose(self) -> None:
        await self._provider.disconnect()


@dataclass
class FakeTokenMinter:
    """In-memory HealthToken with the contract's rules and scripted trouble.

    ``down = True`` makes every call raise ChainUnavailable. ``drop_next`` loses that many
    submitted transactions (never mined). ``paused`` refuses mints as the contract does.
    """

    cap: int = 10**9 * 10**18
    down: bool = False
    paused: bool = False
    drop_next: int = 0
    balances: dict[str, int] = field(default_factory=dict)
    minted_batches: dict[bytes, str] = field(default_factory=dict)
    #: Every mintBatch submitted (also dropped and refused ones).
    transactions: int = 0
    total_supply: int = 0
    _mined: dict[str, MintTx] = field(default_factory=dict)
    _block: int = 0

    def _check(self) -> None:
        if self.down:
            raise ChainUnavailable("node down")

    async def connect(self) -> None:
        self._check()

    async def mint_batch(
        self, batch_id: bytes, recipients: Sequence[str], amounts: Sequence[int]
    ) -> str:
        self._check()
        to = [str(a) for a in _checked_addresses(recipients)]
        if batch_id == bytes(32):
            raise ChainRejected("ZeroBatchId")
        if batch_id in self.minted_batches:
            raise ChainRejected(f"BatchAlreadyMinted({_hex(batch_id)})")
        if len(to) != len(amounts):
            raise ChainRejected(f"LengthMismatch({len(to)}, {len(amounts)})")
        if self.paused:
            raise ChainRejected("EnforcedPause")
        total = sum(amounts)
        if self.total_supply + total > self.cap:
            raise ChainRejected("ERC20ExceededCap")
        self.transactions += 1
        tx_hash = _hex(self.transactions.to_bytes(32, "big"))
        if self.drop_next > 0:
            self.drop_next -= 1
            return tx_hash
        for address, amount in zip(to, amounts, strict=True):
            self.balances[address] = self.balances.get(address, 0) + int(amount)
        self.total_supply += total
        self._block += 1
        self.minted_batches[batch_id] = tx_hash
        self._mined[tx_hash] = MintTx(tx_hash, self._block, 40_000 + 30_000 * len(to))
        return tx_hash

    async def batch_minted(self, batch_id: bytes) -> bool:
        self._check()
        return batch_id in self.minted_batches

    async def wait_mined(self, tx_hash: str) -> MintTx | None:
        self._check()
        return self._mined.get(tx_hash)

    async def balance_of(self, address: str) -> int:
        self._check()
        return self.balances.get(str(to_checksum_address(address)), 0)

    async def aclose(self) -> None:
        return None


class DeferredMinter:
    """A minter that connects when the batcher first needs it (the chain starts in the
    background); ``connect`` builds the real one."""

    def __init__(self, connect: Callable[[], Awaitable[TokenMinter]]) -> None:
        self._connect = connect
        self._minter: TokenMinter | None = None

    async def _get(self) -> TokenMinter:
        if self._minter is None:
            minter = await self._connect()
            await minter.connect()
            self._minter = minter
        return self._minter

    async def connect(self) -> None:
        await self._get()

    async def mint_batch(
        self, batch_id: bytes, recipients: Sequence[str], amounts: Sequence[int]
    ) -> str:
        return await (await self._get()).mint_batch(batch_id, recipients, amounts)

    async def batch_minted(self, batch_id: bytes) -> bool:
        return await (await self._get()).batch_minted(batch_id)

    async def wait_mined(self, tx_hash: str) -> MintTx | None:
        return await (await self._get()).wait_mined(tx_hash)

    async def balance_of(self, address: str) -> int:
        return await (await self._get()).balance_of(address)

    async def aclose(self) -> None:
        if self._minter is not None:
            await self._minter.aclose()
