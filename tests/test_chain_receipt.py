"""Receipts: round trip, malformed input, offline tampering, and on-chain checks against a tiny
scripted JSON-RPC node (eth_chainId, eth_call anchoredAt, eth_getTransactionReceipt)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from eth_hash.auto import keccak
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from healtrace.chain.evidence import EvidenceRecord, build_record
from healtrace.chain.merkle import MerkleTree
from healtrace.chain.receipt import (
    ANCHORED_EVENT_TOPIC,
    Receipt,
    make_receipt,
    parse_receipt,
    verify_offline,
    verify_onchain,
)
from healtrace.errors import HealTraceError, InputError

CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"  # valid EIP-55 checksum
TX = "0x" + "ab" * 32
BLOCK = 7
ANCHOR_TIME = 1_795_000_000


def record(i: int) -> EvidenceRecord:
    return build_record(
        session_id="s1",
        message_id=f"m{i}",
        turn_id=f"t{i}",
        tenant_id="acme",
        model="qwen2.5-7b",
        prompt_version="v3",
        question=f"问题 {i}",
        answer=f"answer {i}",
        created_at="2026-11-22T11:00:00.000Z",
        triage_level="routine",
    )


@pytest.fixture(scope="module")
def batch() -> tuple[list[EvidenceRecord], MerkleTree]:
    records = [record(i) for i in range(11)]
    return records, MerkleTree([r.hash for r in records])


def receipt_for(batch: tuple[list[EvidenceRecord], MerkleTree], i: int = 5, **kw: Any) -> Receipt:
    records, tree = batch
    values: dict[str, Any] = {
        "chain_id": 31337,
        "contract": CONTRACT,
        "tx_hash": TX,
        "block_number": BLOCK,
        "anchored_at": "2026-11-22T11:05:00Z",
        **kw,
    }
    return make_receipt(records[i], tree, i, **values)


def test_round_trip(batch: tuple[list[EvidenceRecord], MerkleTree]) -> None:
    receipt = receipt_for(batch)
    text = receipt.to_json()
    again = parse_receipt(text)
    assert again == receipt
    assert parse_receipt(text.encode()) == receipt == parse_receipt(json.loads(text))
    assert receipt.contract == CONTRACT and receipt.leaf_count == 11
    result = verify_offline(again)
    assert result.ok and result.code is None
    assert [c.name for c in result.checks] == ["record_hash", "proof_length", "merkle_proof"]
    result.raise_for_failure()
    # Without the record only the proof is checked.
    bare = receipt_for(batch, include_record=False)
    assert bare.record is None and verify_offline(parse_receipt(bare.to_json())).ok
    # Lowercase address is accepted and checksummed; hex is normalised to lowercase.
    data = json.loads(text)
    data["contract"] = CONTRACT.lower()
    data["root"] = data["root"].upper().replace("0X", "0x")
    assert parse_receipt(data) == receipt


def good(batch: tuple[list[EvidenceRecord], MerkleTree]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(receipt_for(batch).to_json())
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("root"), "root: missing field"),
        (lambda d: d.update(root="0x1234"), "root must be 0x followed by 64 hex"),
        (lambda d: d.update(record_hash="ab" * 32), "record_hash must be 0x"),
        (lambda d: d.update(tx_hash="0x" + "zz" * 32), "tx_hash must be 0x"),
        (lambda d: d["proof"].append("0x00"), "proof[4] must be 0x"),
        (lambda d: d.update(proof="0x" + "00" * 32), "proof must be a list"),
        (lambda d: d.update(contract="0x1234"), "contract must be 0x followed by 40"),
        (
            lambda d: d.update(contract=CONTRACT.replace("f", "F", 1)),
            "wrong EIP-55 checksum",
        ),
        (lambda d: d.update(leaf_index=11), "leaf_index 11 is not below leaf_count"),
        (lambda d: d.update(leaf_index=-1), "leaf_index"),
        (lambda d: d.update(chain_id="31337"), "chain_id"),
        (lambda d: d.update(version=2), "version"),
        (lambda d: d.update(anchored_at="yesterday"), "anchored_at must be a UTC ISO 8601"),
        (lambda d: d.update(extra=1), "extra: unknown field"),
        (lambda d: d["record"].update(version=1.0), "record"),
        (lambda d: d["record"].pop("consent_ref"), "record must list every field"),
        (lambda d: d["record"].update(question="我头痛"), "question"),
        (lambda d: d.update(record=[1]), "record must be a JSON object"),
    ],
)
def test_malformed_receipts(
    batch: tuple[list[EvidenceRecord], MerkleTree], change: Any, message: str
) -> None:
    data = good(batch)
    change(data)
    with pytest.raises(InputError) as err:
        parse_receipt(json.dumps(data))
    assert err.value.code == "receipt_malformed"
    assert message in err.value.detail, err.value.detail
    assert err.value.detail in err.value.message("en")


@pytest.mark.parametrize("raw", [b"", b"{", "not json", b"\xff\xfe", "[]", "42"])
def test_not_json_or_not_an_object(raw: bytes | str) -> None:
    with pytest.raises(InputError) as err:
        parse_receipt(raw)
    assert err.value.code == "receipt_malformed"


def test_tampering_fails_offline(batch: tuple[list[EvidenceRecord], MerkleTree]) -> None:
    data = good(batch)
    data["record"]["answer_sha256"] = "0" * 64
    result = verify_offline(parse_receipt(data))
    assert not result.ok and result.code == "receipt_proof_invalid"
    assert result.checks[0].name == "record_hash" and not result.checks[0].passed
    with pytest.raises(InputError) as err:
        result.raise_for_failure()
    assert err.value.code == "receipt_proof_invalid"

    data = good(batch)
    data["proof"][1] = "0x" + "11" * 32
    result = verify_offline(parse_receipt(data))
    assert not result.ok and [c.passed for c in result.checks] == [True, True, False]

    data = good(batch)
    data["root"] = "0x" + "22" * 32
    assert not verify_offline(parse_receipt(data)).ok

    # Sorted-pair hashing does not bind the position: a leaf_index whose path has the same
    # length still verifies (documented), one whose path length differs does not.
    data = good(batch)
    data["leaf_index"] = 4
    assert verify_offline(parse_receipt(data)).ok
    data["leaf_index"] = 10
    result = verify_offline(parse_receipt(data))
    assert not result.ok and "needs 2" in result.checks[1].detail

    # Shortened proof: an internal node posing as a leaf is rejected by the length check.
    tree = batch[1]
    data = good(batch)
    data["record"] = None
    pair = (tree.leaves[4], tree.leaves[5])
    data["record_hash"] = "0x" + keccak(min(pair) + max(pair)).hex()
    data["proof"] = data["proof"][1:]
    result = verify_offline(parse_receipt(data))
    assert not result.ok
    assert [c.name for c in result.checks if not c.passed] == ["proof_length"]


# --- on-chain checks against a scripted JSON-RPC node -----------------------------------------


@dataclass
class Node:
    url: str
    chain_id: int = 31337
    anchored: dict[str, int] = field(default_factory=dict)
    receipts: dict[str, dict[str, Any]] = field(default_factory=dict)
    delay_s: float = 0.0
    calls: list[str] = field(default_factory=list)


def tx_receipt(root: str, leaf_count: int, block: int = BLOCK) -> dict[str, Any]:
    data = leaf_count.to_bytes(32, "big") + (96).to_bytes(32, "big")
    data += ANCHOR_TIME.to_bytes(32, "big") + (0).to_bytes(32, "big")
    zero32 = "0x" + "00" * 32
    return {
        "transactionHash": TX,
        "transactionIndex": "0x0",
        "blockHash": zero32,
        "blockNumber": hex(block),
        "from": "0x" + "11" * 20,
        "to": CONTRACT.lower(),
        "cumulativeGasUsed": "0x5208",
        "gasUsed": "0x5208",
        "effectiveGasPrice": "0x1",
        "contractAddress": None,
        "logsBloom": "0x" + "00" * 256,
        "status": "0x1",
        "type": "0x2",
        "logs": [
            {
                "address": CONTRACT.lower(),
                "topics": ["0x" + ANCHORED_EVENT_TOPIC.hex(), root],
                "data": "0x" + data.hex(),
                "blockNumber": hex(block),
                "blockHash": zero32,
                "transactionHash": TX,
                "transactionIndex": "0x0",
                "logIndex": "0x0",
                "removed": False,
            }
        ],
    }


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    state = Node(url=f"http://127.0.0.1:{sock.getsockname()[1]}/")
    selector = keccak(b"anchoredAt(bytes32)")[:4].hex()

    async def rpc(request: Request) -> JSONResponse:
        body = await request.json()
        method, params = body["method"], body.get("params", [])
        state.calls.append(method)
        await asyncio.sleep(state.delay_s)
        result: Any
        if method == "eth_chainId":
            result = hex(state.chain_id)
        elif method == "eth_call":
            data = params[0].get("data") or params[0].get("input")
            assert data[2:10] == selector and params[0]["to"].lower() == CONTRACT.lower()
            result = "0x" + state.anchored.get("0x" + data[10:], 0).to_bytes(32, "big").hex()
        elif method == "eth_getTransactionReceipt":
            result = state.receipts.get(params[0].lower())
        else:
            return JSONResponse(
                {"jsonrpc": "2.0", "id": body["id"], "error": {"code": -32601, "message": method}}
            )
        return JSONResponse({"jsonrpc": "2.0", "id": body["id"], "result": result})

    app = Starlette(routes=[Route("/", rpc, methods=["POST"])])
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(srv.serve(sockets=[sock]))
    for _ in range(500):
        if srv.started:
            break
        await asyncio.sleep(0.01)
    yield state
    srv.should_exit = True
    await task
    sock.close()


def anchor(node: Node, receipt: Receipt) -> None:
    node.anchored[receipt.root] = ANCHOR_TIME
    node.receipts[TX] = tx_receipt(receipt.root, receipt.leaf_count)


async def test_onchain_ok(node: Node, batch: tuple[list[EvidenceRecord], MerkleTree]) -> None:
    receipt = receipt_for(batch)
    anchor(node, receipt)
    result = await verify_onchain(receipt, node.url)
    assert result.ok, result.checks
    assert [c.name for c in result.checks][-3:] == ["chain_id", "anchored", "anchor_tx"]
    assert "2026-11-18T" in result.checks[-2].detail  # anchoredAt time is reported
    assert {"eth_chainId", "eth_call", "eth_getTransactionReceipt"} <= set(node.calls)
    node.calls.clear()
    assert (await verify_onchain(receipt, node.url, check_tx=False)).ok
    assert "eth_getTransactionReceipt" not in node.calls


async def test_onchain_wrong_chain(
    node: Node, batch: tuple[list[EvidenceRecord], MerkleTree]
) -> None:
    receipt = receipt_for(batch)
    anchor(node, receipt)
    node.chain_id = 1
    result = await verify_onchain(receipt, node.url)
    assert not result.ok and result.code == "receipt_chain_mismatch"
    assert result.params == {"expected": 31337, "actual": 1}
    with pytest.raises(InputError) as err:
        result.raise_for_failure()
    assert "chain 31337" in err.value.message("en") and "31337" in err.value.message("zh-CN")


async def test_onchain_not_anchored(
    node: Node, batch: tuple[list[EvidenceRecord], MerkleTree]
) -> None:
    receipt = receipt_for(batch)
    result = await verify_onchain(receipt, node.url)
    assert not result.ok and result.code == "receipt_not_anchored"
    assert "eth_getTransactionReceipt" not in node.calls


async def test_onchain_tx_checks(
    node: Node, batch: tuple[list[EvidenceRecord], MerkleTree]
) -> None:
    receipt = receipt_for(batch)
    node.anchored[receipt.root] = ANCHOR_TIME
    result = await verify_onchain(receipt, node.url)  # tx unknown to the node
    assert not result.ok and result.code == "receipt_not_anchored"
    assert "not found" in result.checks[-1].detail

    node.receipts[TX] = tx_receipt(receipt.root, receipt.leaf_count, block=BLOCK + 1)
    result = await verify_onchain(receipt, node.url)
    assert not result.ok and "block 8" in result.checks[-1].detail

    node.receipts[TX] = tx_receipt("0x" + "33" * 32, receipt.leaf_count)
    result = await verify_onchain(receipt, node.url)
    assert not result.ok and "no Anchored event" in result.checks[-1].detail

    node.receipts[TX] = tx_receipt(receipt.root, 3)
    result = await verify_onchain(receipt, node.url)
    assert not result.ok and "says 3 leaves" in result.checks[-1].detail


async def test_onchain_skips_the_node_when_offline_checks_fail(
    node: Node, batch: tuple[list[EvidenceRecord], MerkleTree]
) -> None:
    data = good(batch)
    data["record"]["model"] = "other"
    result = await verify_onchain(parse_receipt(data), node.url)
    assert not result.ok and result.code == "receipt_proof_invalid" and node.calls == []


async def test_onchain_unreachable(batch: tuple[list[EvidenceRecord], MerkleTree]) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    result = await verify_onchain(receipt_for(batch), f"http://127.0.0.1:{port}/", timeout_s=3)
    assert not result.ok and result.code == "chain_unavailable"
    assert f"127.0.0.1:{port}" in result.checks[-1].detail
    with pytest.raises(HealTraceError) as err:
        result.raise_for_failure()
    assert err.value.code == "chain_unavailable" and "无法连接" in err.value.message("zh")


async def test_onchain_timeout(node: Node, batch: tuple[list[EvidenceRecord], MerkleTree]) -> None:
    node.delay_s = 2.0
    result = await verify_onchain(receipt_for(batch), node.url, timeout_s=0.3)
    assert not result.ok and result.code == "chain_unavailable"
    assert "timed out" in result.checks[-1].detail
    node.delay_s = 0.0
