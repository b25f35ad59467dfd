"""On-chain evidence: records, Merkle trees, receipts, the anchoring outbox and batcher, and
the contracts (EvidenceRegistry, HealthToken, ConsentRegistry).

Names load lazily: ``healtrace.chain`` imports in milliseconds, and web3 is imported only by
the parts that talk to a node.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from healtrace._lazy import lazy_getattr as _lazy_getattr

if TYPE_CHECKING:
    from healtrace.chain.anchoring import AnchorBatcher
    from healtrace.chain.client import AnchorTx, FakeRegistry, RegistryChain, Web3Registry
    from healtrace.chain.contracts import Artifact, load_artifact
    from healtrace.chain.evidence import EvidenceRecord, build_record, record_hash
    from healtrace.chain.merkle import MerkleTree, verify_proof
    from healtrace.chain.outbox import EvidenceOutbox
    from healtrace.chain.receipt import Receipt, parse_receipt, verify_offline, verify_onchain
    from healtrace.chain.service import ChainService

_WHERE = {
    "AnchorBatcher": "anchoring",
    "AnchorTx": "client",
    "Artifact": "contracts",
    "ChainService": "service",
    "EvidenceOutbox": "outbox",
    "EvidenceRecord": "evidence",
    "FakeRegistry": "client",
    "MerkleTree": "merkle",
    "Receipt": "receipt",
    "RegistryChain": "client",
    "Web3Registry": "client",
    "build_record": "evidence",
    "load_artifact": "contracts",
    "parse_receipt": "receipt",
    "record_hash": "evidence",
    "verify_offline": "receipt",
    "verify_onchain": "receipt",
    "verify_proof": "merkle",
}

__all__ = [
    "AnchorBatcher",
    "AnchorTx",
    "Artifact",
    "ChainService",
    "EvidenceOutbox",
    "EvidenceRecord",
    "FakeRegistry",
    "MerkleTree",
    "Receipt",
    "RegistryChain",
    "Web3Registry",
    "build_record",
    "load_artifact",
    "parse_receipt",
    "record_hash",
    "verify_offline",
    "verify_onchain",
    "verify_proof",
]


__getattr__ = _lazy_getattr(__name__, _WHERE, globals())
