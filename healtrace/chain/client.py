"""Talking to the evidence registry on an EVM chain: one small interface, two implementations.

:class:`RegistryChain` is what the anchoring batcher needs. :class:`Web3Registry` speaks
JSON-RPC to any EVM node (the embedded anvil, or a production chain) and signs locally with
the configured key; :class:`FakeRegistry` is a scripted in-memory stand-in with the same
rules (a root anchors once) and switchable outages, for tests and offline demos.

Failures are split the way the batcher needs them: :class:`ChainUnavailable` (the node
cannot be reached, timed out, or dropped the transaction) is retried with backoff;
:class:`ChainRejected` (the node refused the transaction: wrong key, no role, out of gas)
is a configuration problem and is reported, then retried slowly.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.exceptions import (
    ContractCustomError,
    ContractLogicError,
    TimeExhausted,
    TransactionNotFound,
    Web3Exception,
)

from healtrace.chain.contracts import load_artifact
from healtrace.chain.receipt import ANCHORED_EVENT_TOPIC
from healtrace.errors import HealTraceError

__all__ = [
    "ANVIL_DEV_KEY",
    "AnchorTx",
    "ChainRejected",
    "ChainUnavailable",
    "FakeRegistry",
    "RegistryChain",
    "Web3Registry",
    "send_lock",
]

log = logging.getLogger(__name__)

#: anvil's first development account (public knowledge: it exists in every anvil node).
#: Used only with the embedded node, never for a configured ``rpc_url``.
ANVIL_DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"

_NETWORK_ERRORS = (OSError, TimeoutError, aiohttp.ClientError)

# Keyed by the event loop itself (weakly): a lock belongs to one loop, and a loop's id can
# be reused by a later loop after the first is gone.
_SEND_LOCKS: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, str], asyncio.Lock]
] = weakref.WeakKeyDictionary()


def send_lock(rpc_url: str, sender: str) -> asyncio.Lock:
    """One lock per node and sending account in this process: taking the pending nonce and
    sending must not interleave, or two transactions (an anchor and a consent grant, say)
    would get the same nonce and one would be dropped."""
    locks = _SEND_LOCKS.setdefault(asyncio.get_running_loop(), {})
    lock = locks.get((rpc_url, sender))
    if lock is None:
        lock = locks[(rpc_url, sender)] = asyncio.Lock()
    return lock


class ChainUnavailable(HealTraceError):
    """The node could not be reached or did not answer in time; try again later."""

    code = "chain_unavailable"


class ChainRejected(HealTraceError):
    """The node refused the transaction (missing role, bad key, reverted); not transient."""

    code = "chain_rejected"


@dataclass(frozen=True, slots=True)
class AnchorTx:
    """Where a root was anchored."""

    tx_hash: str
    block_number: int
    gas_used: int
    #: Block time of the anchoring block (what ``anchoredAt(root)`` returns).
    anchored_at: datetime


class RegistryChain(Protocol):
    """The registry operations the anchoring batcher uses."""

    @property
    def chain_id(self) -> int: ...
    @property
    def contract(self) -> str: ...

    async def connect(self) -> None:
        """Check the node and the registry; raise ChainUnavailable when unreachable."""

    async def find_anchor(self, root: bytes) -> AnchorTx | None:
        """The anchoring of ``root`` if the registry has it, else None."""

    async def anchor(self, root: bytes, leaf_count: int, batch_uri: str) -> str:
        """Submit ``anchor(root, leafCount, batchUri)``; return the transaction hash."""

    async def wait_mined(self, tx_hash: str) -> AnchorTx | None:
        """The mined anchoring, or None if the node no longer knows the transaction."""

    async def aclose(self) -> None: ...


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


class Web3Registry:
    """The EvidenceRegistry at ``contract`` on the node at ``rpc_url``.

    ``private_key`` signs transactions locally (eth-account); it is never sent or logged.
    """

    def __init__(
        self,
        rpc_url: str,
        contract: str,
        private_key: str,
        *,
        expected_chain_id: int = 0,
        timeout_s: float = 10.0,
        receipt_timeout_s: float = 120.0,
    ) -> None:
        self.rpc_url = rpc_url
        self._contract = to_checksum_address(contract)
        self._account: LocalAccount = Account.from_key(private_key)
        self._expected_chain_id = expected_chain_id
        self._timeout_s = timeout_s
        self._receipt_timeout_s = receipt_timeout_s
        self._provider = AsyncHTTPProvider(
            rpc_url,
            request_kwargs={"timeout": aiohttp.ClientTimeout(total=timeout_s)},
            exception_retry_configuration=None,
        )
        self._w3: AsyncWeb3[Any] = AsyncWeb3(self._provider)
        self._registry = self._w3.eth.contract(
            address=self._contract, abi=load_artifact("EvidenceRegistry").abi
        )
        self._chain_id = 0

    @property
    def chain_id(self) -> int:
        return self._chain_id

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
        chain_id = int(await self._call("eth_chainId", self._w3.eth.chain_id))
        if self._expected_chain_id and chain_id != self._expected_chain_id:
            raise ChainRejected(
                f"node at the RPC URL is chain {chain_id}, HEALTRACE_CHAIN__CHAIN_ID says "
                f"{self._expected_chain_id}",
                code="chain_rejected",
            )
        code = await self._call("eth_getCode", self._w3.eth.get_code(self._contract))
        if not code:
            raise ChainRejected(
                f"no contract at {self._contract} on chain {chain_id}: set "
                "HEALTRACE_CHAIN__REGISTRY_ADDRESS to the deployed EvidenceRegistry",
                code="chain_rejected",
            )
        self._chain_id = chain_id

    async def find_anchor(self, root: bytes) -> AnchorTx | None:
        stamp = int(
            await self._call("anchoredAt", self._registry.functions.anchoredAt(root).call())
        )
        if not stamp:
            return None
        logs = await self._call(
            "eth_getLogs",
            self._w3.eth.get_logs(
                {
                    "address": self._contract,
                    "fromBlock": 0,
                    "toBlock": "latest",
                    "topics": [_hex(ANCHORED_EVENT_TOPIC), _hex(root)],
                }
            ),
        )
        if not logs:
            # Anchored, but the node prunes old logs: the block is unknown to us.
            raise ChainUnavailable(
                "root is anchored but its Anchored event is not in the node's logs"
            )
        entry = logs[0]
        tx_hash = _hex(bytes(entry["transactionHash"]))
        receipt = await self._call(
            "eth_getTransactionReceipt",
            self._w3.eth.get_transaction_receipt(tx_hash),  # type: ignore[arg-type]
        )
        return AnchorTx(
            tx_hash=tx_hash,
            block_number=int(entry["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            anchored_at=datetime.fromtimestamp(stamp, UTC),
        )

    async def anchor(self, root: bytes, leaf_count: int, batch_uri: str) -> str:
        async with send_lock(self.rpc_url, self.sender):
            return await self._send_anchor(root, leaf_count, batch_uri)

    async def _send_anchor(self, root: bytes, leaf_count: int, batch_uri: str) -> str:
        sender = self._account.address
        nonce = await self._call(
            "eth_getTransactionCount", self._w3.eth.get_transaction_count(sender, "pending")
        )
        try:
            tx = await self._call(
                "eth_estimateGas",
                self._registry.functions.anchor(root, leaf_count, batch_uri).build_transaction(
                    {"from": sender, "nonce": nonce, "chainId": self._chain_id}
                ),
            )
        except (ContractCustomError, ContractLogicError) as exc:
            raise ChainRejected(f"anchor() would revert: {exc}") from exc
        signed = self._account.sign_transaction(tx)
        try:
            sent = await self._call(
                "eth_sendRawTransaction", self._w3.eth.send_raw_transaction(signed.raw_transaction)
            )
        except Web3Exception as exc:
            raise ChainRejected(f"node refused the transaction: {exc}") from exc
        return _hex(bytes(sent))

    async def wait_mined(self, tx_hash: str) -> AnchorTx | None:
        try:
            receipt = await self._w3.eth.wait_for_transaction_receipt(
                tx_hash,  # type: ignore[arg-type]
                timeout=self._receipt_timeout_s,
                poll_latency=0.2,
            )
        except TimeExhausted:
            return None
        except TransactionNotFound:
            return None
        except _NETWORK_ERRORS as exc:
            raise ChainUnavailable(f"waiting for {tx_hash}: {type(exc).__name__}") from exc
        if receipt["status"] != 1:
            return None
        block = await self._call(
            "eth_getBlockByNumber", self._w3.eth.get_block(receipt["blockNumber"])
        )
        return AnchorTx(
            tx_hash=tx_hash,
            block_number=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            anchored_at=datetime.fromtimestamp(int(block["timestamp"]), UTC),
        )

    async def aclose(self) -> None:
        await self._provider.disconnect()


@dataclass
class FakeRegistry:
    """In-memory registry with the contract's rule (a root anchors once) and outages.

    Set ``down = True`` to make every call raise ChainUnavailable, as an unreachable node
    does. ``transactions`` counts submitted anchors; ``anchors`` maps roots to leaf counts.
    """

    chain_id: int = 31337
    contract: str = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    down: bool = False
    #: Submitted transactions that are "lost" (never mined), to exercise re-sending.
    drop_next: int = 0
    gas_per_anchor: int = 60_000
    anchors: dict[bytes, int] = field(default_factory=dict)
    transactions: int = 0
    _mined: dict[str, AnchorTx] = field(default_factory=dict)
    _by_root: dict[bytes, AnchorTx] = field(default_factory=dict)
    _block: int = 0

    def _check(self) -> None:
        if self.down:
            raise ChainUnavailable("node down")

    async def connect(self) -> None:
        self._check()

    async def find_anchor(self, root: bytes) -> AnchorTx | None:
        self._check()
        return self._by_root.get(root)

    async def anchor(self, root: bytes, leaf_count: int, batch_uri: str) -> str:
        self._check()
        if root in self.anchors:
            raise ChainRejected("AlreadyAnchored")
        self.transactions += 1
        tx_hash = _hex(self.transactions.to_bytes(32, "big"))
        if self.drop_next > 0:
            self.drop_next -= 1
            return tx_hash
        self._block += 1
        mined = AnchorTx(tx_hash, self._block, self.gas_per_anchor, datetime.now(UTC))
        self.anchors[root] = leaf_count
        self._mined[tx_hash] = mined
        self._by_root[root] = mined
        return tx_hash

    async def wait_mined(self, tx_hash: str) -> AnchorTx | None:
        self._check()
        return self._mined.get(tx_hash)

    async def aclose(self) -> None:
        return None
