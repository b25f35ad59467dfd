"""An in-process EVM (eth-tester + py-evm) with HealTrace's three contracts deployed.

Chain time is moved ten years ahead of the wall clock once, at start-up: from then on every
block's timestamp is its parent's plus one, so tests reason about ``block.timestamp`` exactly
and never depend on how long they take.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from eth_abi.abi import decode
from eth_hash.auto import keccak
from eth_keys.datatypes import PrivateKey
from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.exceptions import TransactionFailed
from eth_utils.address import to_checksum_address
from web3 import EthereumTesterProvider, Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.types import TxReceipt

from healtrace.chain.contracts import ContractName, load_artifact

TEN_YEARS = 10 * 365 * 86_400
TOKEN_CAP = 1_000_000 * 10**18


@dataclass
class Chain:
    """The tester, web3 over it, funded accounts with their keys, and the deployed contracts.

    Roles: ``admin`` administers everything; ``anchorer`` anchors; ``minter`` mints;
    ``pauser`` pauses; ``relayer`` submits signed consent messages; ``others`` hold nothing.
    """

    tester: EthereumTester
    w3: Web3
    keys: dict[str, PrivateKey]
    registry: Contract
    token: Contract
    consent: Contract
    snapshot: Any = None

    @property
    def accounts(self) -> list[str]:
        return list(self.keys)

    def key(self, address: str) -> PrivateKey:
        return self.keys[address]

    @property
    def admin(self) -> str:
        return self.accounts[0]

    @property
    def anchorer(self) -> str:
        return self.accounts[1]

    @property
    def minter(self) -> str:
        return self.accounts[2]

    @property
    def pauser(self) -> str:
        return self.accounts[3]

    @property
    def relayer(self) -> str:
        return self.accounts[4]

    @property
    def others(self) -> list[str]:
        return self.accounts[5:]

    def now(self) -> int:
        """Timestamp of the latest block: what a view call sees as ``block.timestamp``."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def travel(self, seconds: int) -> int:
        """Mine a block ``seconds`` after the latest one; returns its timestamp."""
        target = self.now() + seconds
        # eth-tester mines the block at ``to_timestamp - 1``.
        self.tester.time_travel(target + 1)
        assert self.now() == target
        return target

    def reset(self) -> None:
        """Back to the state right after deployment."""
        self.tester.revert_to_snapshot(self.snapshot)

    def send(self, fn: ContractFunction, sender: str) -> TxReceipt:
        tx_hash = fn.transact({"from": sender})
        receipt = self.w3.eth.get_transaction_receipt(tx_hash)
        assert receipt["status"] == 1
        return receipt

    def deploy(self, name: ContractName, *args: Any, sender: str | None = None) -> Contract:
        artifact = load_artifact(name)
        factory = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        tx_hash = factory.constructor(*args).transact({"from": sender or self.admin})
        receipt = self.w3.eth.get_transaction_receipt(tx_hash)
        assert receipt["status"] == 1 and receipt["contractAddress"]
        return self.w3.eth.contract(address=receipt["contractAddress"], abi=artifact.abi)


def new_chain() -> Chain:
    """A fresh chain with the three contracts deployed and roles granted, snapshotted."""
    backend = PyEVMBackend()
    tester = EthereumTester(backend)
    w3 = Web3(EthereumTesterProvider(tester))
    keys = {to_checksum_address(k.public_key.to_address()): k for k in backend.account_keys}
    latest = int(w3.eth.get_block("latest")["timestamp"])
    tester.time_travel(latest + TEN_YEARS)
    chain = Chain(tester, w3, keys, registry=None, token=None, consent=None)  # type: ignore[arg-type]
    chain.registry = chain.deploy("EvidenceRegistry", chain.admin, chain.anchorer)
    chain.token = chain.deploy("HealthToken", "HealTrace Health", "HEAL", TOKEN_CAP, chain.admin)
    chain.consent = chain.deploy("ConsentRegistry")
    token = chain.token.functions
    chain.send(token.grantRole(token.MINTER_ROLE().call(), chain.minter), chain.admin)
    chain.send(token.grantRole(token.PAUSER_ROLE().call(), chain.pauser), chain.admin)
    chain.snapshot = tester.take_snapshot()
    return chain


def revert_data(exc: TransactionFailed) -> bytes:
    """The raw revert data of a failed call (eth-tester passes it on as a bytes literal)."""
    text = str(exc.args[0]).removeprefix("execution reverted: ")
    value = ast.literal_eval(text)
    assert isinstance(value, bytes), f"not a custom-error revert: {exc}"
    return value


def decode_error(contract: Contract, data: bytes) -> tuple[str, tuple[Any, ...]]:
    """Name and arguments of the custom error ``data`` encodes, using the contract's ABI."""
    for entry in contract.abi:
        if entry["type"] != "error":
            continue
        types = [i["type"] for i in entry["inputs"]]
        if keccak(f"{entry['name']}({','.join(types)})".encode())[:4] == data[:4]:
            values = decode(types, data[4:])
            return entry["name"], tuple(
                to_checksum_address(v) if t == "address" else v
                for t, v in zip(types, values, strict=True)
            )
    raise AssertionError(f"revert data {data.hex()} matches no error in the ABI")


@contextmanager
def reverts(contract: Contract, error: str, *args: Any) -> Iterator[None]:
    """Expect the block to revert with custom error ``error`` (and ``args``, when given)."""
    with pytest.raises(TransactionFailed) as info:
        yield
    name, values = decode_error(contract, revert_data(info.value))
    assert name == error, f"reverted with {name}{values}, expected {error}"
    if args:
        assert values == args, f"{error} arguments {values}, expected {args}"
