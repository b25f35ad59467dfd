"""Receipts: what a user keeps to prove, later and without trusting HealTrace, that an answer's
evidence record existed when its batch was anchored on chain.

A receipt carries the record hash, optionally the record itself (so the holder can recompute
the hash, see :mod:`healtrace.chain.evidence`), the Merkle proof from that leaf to the batch
root (see :mod:`healtrace.chain.merkle`), and where the root was anchored (chain id, registry
contract, transaction, block).

Verification has two layers, so a receipt can be checked with no network at all:

* :func:`verify_offline` — the record (if present) hashes to ``record_hash``; the proof has the
  length the tree shape ``leaf_index``/``leaf_count`` implies (so an internal node cannot pose
  as a leaf with a shortened proof); and the proof leads from ``record_hash`` to ``root``.
* :func:`verify_onchain` — the above, then asks an Ethereum JSON-RPC node: is it the receipt's
  chain; does the registry's ``anchoredAt(root)`` return a non-zero time; and (optionally) is
  the anchoring transaction in the stated block with an ``Anchored`` event for this root.

What a receipt does *not* prove: the exact ``leaf_index``. OpenZeppelin-compatible proofs hash
sorted pairs, so a proof says "this leaf is in the tree", not "at position i"; the index is
only used to check the proof's length. Order within a batch is not part of the claim.

Both return a :class:`VerifyResult` listing every check, so a UI can show which part failed;
``VerifyResult.raise_for_failure`` turns a failure into the matching :class:`InputError`.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

import aiohttp
from eth_hash.auto import keccak
from eth_utils.address import is_checksum_address, to_checksum_address
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.exceptions import TransactionNotFound, Web3Exception

from healtrace.chain.evidence import (
    EvidenceRecord,
    canonical_json,
    format_timestamp,
    parse_record,
    record_hash,
)
from healtrace.chain.merkle import MerkleTree, proof_length, verify_proof
from healtrace.errors import HealTraceError, InputError

__all__ = [
    "ANCHORED_EVENT_TOPIC",
    "REGISTRY_ABI",
    "Check",
    "Receipt",
    "VerifyResult",
    "make_receipt",
    "parse_receipt",
    "verify_offline",
    "verify_onchain",
]

#: The two registry members a verifier needs; nothing else of the contract is assumed.
REGISTRY_ABI: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "anchoredAt",
        "stateMutability": "view",
        "inputs": [{"name": "root", "type": "bytes32"}],
        "outputs": [{"name": "", "type": "uint64"}],
    },
    {
        "type": "event",
        "name": "Anchored",
        "anonymous": False,
        "inputs": [
            {"name": "root", "type": "bytes32", "indexed": True},
            {"name": "leafCount", "type": "uint32", "indexed": False},
            {"name": "batchUri", "type": "string", "indexed": False},
            {"name": "timestamp", "type": "uint64", "indexed": False},
        ],
    },
]
ANCHORED_EVENT_TOPIC = keccak(b"Anchored(bytes32,uint32,string,uint64)")

_HEX32 = re.compile(r"^0x[0-9a-fA-F]{64}$")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")


def _hex32(value: object, what: str) -> str:
    if not isinstance(value, str) or not _HEX32.match(value):
        raise ValueError(f"{what} must be 0x followed by 64 hex digits (32 bytes)")
    return value.lower()


class Receipt(BaseModel):
    """A verifiable receipt for one evidence record; hex fields are normalised to lowercase."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = 1
    record_hash: str
    record: dict[str, Any] | None = None
    proof: list[str] = Field(default_factory=list)
    root: str
    leaf_index: int = Field(ge=0, strict=True)
    leaf_count: int = Field(ge=1, le=2**32 - 1, strict=True)
    chain_id: int = Field(ge=1, strict=True)
    contract: str
    tx_hash: str
    block_number: int = Field(ge=0, strict=True)
    anchored_at: str

    @field_validator("record_hash", "root", "tx_hash", mode="before")
    @classmethod
    def _check_hex32(cls, value: object, info: Any) -> str:
        return _hex32(value, info.field_name)

    @field_validator("proof", mode="before")
    @classmethod
    def _check_proof(cls, value: object) -> list[str]:
        if not isinstance(value, list):
            raise ValueError("proof must be a list of 0x-prefixed 32-byte hex strings")
        return [_hex32(item, f"proof[{i}]") for i, item in enumerate(value)]

    @field_validator("contract", mode="before")
    @classmethod
    def _check_contract(cls, value: object) -> str:
        if not isinstance(value, str) or not _ADDRESS.match(value):
            raise ValueError("contract must be 0x followed by 40 hex digits")
        mixed = value[2:] != value[2:].lower() and value[2:] != value[2:].upper()
        if mixed and not is_checksum_address(value):
            raise ValueError("contract address has a wrong EIP-55 checksum (mistyped?)")
        return str(to_checksum_address(value))

    @field_validator("anchored_at", mode="before")
    @classmethod
    def _check_anchored_at(cls, value: object) -> str:
        if not isinstance(value, str) or not _ISO_UTC.match(value):
            raise ValueError("anchored_at must be a UTC ISO 8601 time ending in Z")
        return value

    @field_validator("record", mode="before")
    @classmethod
    def _check_record(cls, value: object) -> dict[str, Any] | None:
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise ValueError("record must be a JSON object or null")
        raw = dict(value)
        try:
            complete = canonical_json(parse_record(raw)) == canonical_json(raw)
        except InputError as exc:
            raise ValueError(exc.detail) from exc
        except ValueError as exc:
            raise ValueError(f"record cannot be canonicalised: {exc}") from exc
        except RecursionError as exc:
            raise ValueError("record is nested too deeply to be an evidence record") from exc
        if not complete:
            raise ValueError("record must list every field of the evidence record")
        return raw

    @model_validator(mode="after")
    def _check_shape(self) -> Receipt:
        if self.leaf_index >= self.leaf_count:
            raise ValueError(f"leaf_index {self.leaf_index} is not below leaf_count")
        return self

    def to_json(self) -> str:
        """Compact JSON for storage or download (``parse_receipt`` reads it back)."""
        return self.model_dump_json()


class Check(NamedTuple):
    """One verification step: its name, whether it passed, and a human-readable detail."""

    name: str
    passed: bool
    detail: str


class VerifyResult(BaseModel):
    """Outcome of a verification: ``ok`` only when every check passed.

    ``code`` names the first failure as an error code (``receipt_proof_invalid``,
    ``receipt_chain_mismatch``, ``receipt_not_anchored``, ``chain_unavailable``).
    """

    model_config = ConfigDict(frozen=True)

    ok: bool
    checks: list[Check]
    code: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    def raise_for_failure(self) -> None:
        """Raise the failure as an error with a stable code; no-op when ``ok``."""
        if self.ok:
            return
        failed = next((c for c in self.checks if not c.passed), None)
        detail = failed.detail if failed else "verification failed"
        code = self.code or "receipt_proof_invalid"
        if code == "chain_unavailable":
            raise HealTraceError(detail, code=code, **self.params)
        raise InputError(detail, code=code, **self.params)


def _result(checks: list[Check], code: str | None = None, **params: Any) -> VerifyResult:
    ok = all(c.passed for c in checks)
    return VerifyResult(ok=ok, checks=checks, code=None if ok else code, params=params)


def parse_receipt(data: bytes | str | Mapping[str, Any]) -> Receipt:
    """Read a receipt from JSON bytes/text or a parsed object.

    Raises InputError(receipt_malformed) naming the first problem (not JSON, missing field,
    wrong hex length, bad address checksum, incomplete record, …).
    """
    if isinstance(data, bytes | bytearray | str):
        try:
            value = json.loads(data)
        except (ValueError, RecursionError) as exc:  # decode errors are ValueErrors
            raise InputError(f"not JSON ({exc})", code="receipt_malformed") from exc
    else:
        value = data
    if not isinstance(value, Mapping):
        raise InputError("a receipt must be a JSON object", code="receipt_malformed")
    try:
        return Receipt.model_validate(dict(value))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "receipt"
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = "missing field"
        elif err["type"] == "extra_forbidden":
            msg = "unknown field"
        detail = msg if msg.startswith(where) else f"{where}: {msg}"
        raise InputError(detail, code="receipt_malformed") from exc


def make_receipt(
    record: EvidenceRecord,
    tree: MerkleTree,
    leaf_index: int,
    *,
    chain_id: int,
    contract: str,
    tx_hash: str,
    block_number: int,
    anchored_at: datetime | str,
    include_record: bool = True,
) -> Receipt:
    """Build the receipt for ``record`` at ``leaf_index`` of an anchored ``tree``.

    Raises ValueError if the record's hash is not that leaf (a programming error).
    """
    leaf = record_hash(record)
    if tree.leaves[leaf_index] != leaf:
        raise ValueError(f"leaf {leaf_index} of the tree is not this record's hash")
    stamp = format_timestamp(anchored_at) if isinstance(anchored_at, datetime) else anchored_at
    return parse_receipt(
        {
            "version": 1,
            "record_hash": "0x" + leaf.hex(),
            "record": record.to_json_value() if include_record else None,
            "proof": ["0x" + p.hex() for p in tree.proof(leaf_index)],
            "root": "0x" + tree.root.hex(),
            "leaf_index": leaf_index,
            "leaf_count": tree.leaf_count,
            "chain_id": chain_id,
            "contract": contract,
            "tx_hash": tx_hash,
            "block_number": block_number,
            "anchored_at": stamp,
        }
    )


def verify_offline(receipt: Receipt) -> VerifyResult:
    """Check the record hash (when the record is included) and the Merkle proof; no network."""
    checks: list[Check] = []
    leaf = bytes.fromhex(receipt.record_hash[2:])
    if receipt.record is not None:
        recomputed = record_hash(receipt.record)
        same = recomputed == leaf
        checks.append(
            Check(
                "record_hash",
                same,
                "the record hashes to record_hash"
                if same
                else f"the record hashes to 0x{recomputed.hex()}, not record_hash: it was changed",
            )
        )
    expected_len = proof_length(receipt.leaf_index, receipt.leaf_count)
    length_ok = len(receipt.proof) == expected_len
    checks.append(
        Check(
            "proof_length",
            length_ok,
            f"{len(receipt.proof)} proof elements"
            + ("" if length_ok else f"; leaf {receipt.leaf_index} of {receipt.leaf_count} needs")
            + ("" if length_ok else f" {expected_len}"),
        )
    )
    proof = [bytes.fromhex(p[2:]) for p in receipt.proof]
    included = verify_proof(leaf, proof, bytes.fromhex(receipt.root[2:]))
    checks.append(
        Check(
            "merkle_proof",
            included,
            "the proof leads from record_hash to root"
            if included
            else "the proof does not lead from record_hash to root",
        )
    )
    return _result(checks, "receipt_proof_invalid")


async def verify_onchain(
    receipt: Receipt, rpc_url: str, *, timeout_s: float = 10, check_tx: bool = True
) -> VerifyResult:
    """Verify offline, then against an Ethereum JSON-RPC node at ``rpc_url``.

    Never raises for network or node problems: an unreachable or misbehaving node gives a
    result with ``code="chain_unavailable"`` and a detail naming the cause.
    """
    offline = verify_offline(receipt)
    if not offline.ok:
        return offline
    checks = list(offline.checks)
    provider = AsyncHTTPProvider(
        rpc_url,
        request_kwargs={"timeout": aiohttp.ClientTimeout(total=timeout_s)},
        exception_retry_configuration=None,
    )
    w3 = AsyncWeb3(provider)
    try:
        async with asyncio.timeout(timeout_s):
            return await _onchain_checks(w3, receipt, checks, check_tx)
    except (TimeoutError, OSError, aiohttp.ClientError, Web3Exception, ValueError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
        checks.append(Check("rpc", False, f"node at {rpc_url} failed: {reason}"))
        return _result(checks, "chain_unavailable")
    finally:
        await provider.disconnect()


async def _onchain_checks(
    w3: AsyncWeb3[Any], receipt: Receipt, checks: list[Check], check_tx: bool
) -> VerifyResult:
    chain_id = await w3.eth.chain_id
    if chain_id != receipt.chain_id:
        checks.append(
            Check("chain_id", False, f"node is chain {chain_id}, receipt is {receipt.chain_id}")
        )
        return _result(checks, "receipt_chain_mismatch", expected=receipt.chain_id, actual=chain_id)
    checks.append(Check("chain_id", True, f"node is chain {chain_id}"))

    root = bytes.fromhex(receipt.root[2:])
    registry = w3.eth.contract(address=to_checksum_address(receipt.contract), abi=REGISTRY_ABI)
    anchored: int = await registry.functions.anchoredAt(root).call()
    if not anchored:
        checks.append(Check("anchored", False, f"root is not anchored in {receipt.contract}"))
        return _result(checks, "receipt_not_anchored")
    when = format_timestamp(datetime.fromtimestamp(anchored, UTC))
    checks.append(Check("anchored", True, f"root anchored at {when}"))

    if check_tx:
        checks.append(await _check_tx(w3, receipt, root))
    return _result(checks, "receipt_not_anchored")


async def _check_tx(w3: AsyncWeb3[Any], receipt: Receipt, root: bytes) -> Check:
    try:
        tx = await w3.eth.get_transaction_receipt(receipt.tx_hash)  # type: ignore[arg-type]
    except TransactionNotFound:
        return Check("anchor_tx", False, f"transaction {receipt.tx_hash} not found")
    if tx["blockNumber"] != receipt.block_number:
        return Check(
            "anchor_tx",
            False,
            f"transaction is in block {tx['blockNumber']}, receipt says {receipt.block_number}",
        )
    for log in tx["logs"]:
        topics = [bytes(t) for t in log["topics"]]
        if (
            to_checksum_address(log["address"]) == receipt.contract
            and len(topics) >= 2
            and topics[0] == ANCHORED_EVENT_TOPIC
            and topics[1] == root
        ):
            data = bytes(log["data"])
            leaf_count = int.from_bytes(data[:32], "big") if len(data) >= 32 else None
            if leaf_count != receipt.leaf_count:
                return Check(
                    "anchor_tx",
                    False,
                    f"Anchored event says {leaf_count} leaves, receipt says {receipt.leaf_count}",
                )
            return Check("anchor_tx", True, f"Anchored event in block {receipt.block_number}")
    return Check("anchor_tx", False, "the transaction has no Anchored event for this root")
