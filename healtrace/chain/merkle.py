"""Merkle trees whose proofs OpenZeppelin's ``MerkleProof.verify`` accepts.

Why this shape: the registry contract (and anyone with a Solidity verifier) checks inclusion
with OpenZeppelin's ``MerkleProof.verify(proof, root, leaf)``. That function walks the proof
from the leaf upward, hashing the running value with each proof element as a *sorted pair*::

    node = keccak256(min(a, b) ‖ max(a, b))      # byte-wise (big-endian uint256) order

It never needs to know left from right, so a tree is compatible as long as every internal node
is built the same way and the proof lists the siblings met on the way up.

Tree layout (our choice; OpenZeppelin's verify does not constrain it):

* Leaves are 32-byte hashes in the order given (duplicates allowed; we never sort or dedupe,
  so ``leaf_index`` is the position the caller chose).
* Each level pairs neighbours ``(0, 1), (2, 3), …``. When a level has an odd number of nodes,
  the last one is **promoted** unchanged to the next level. It contributes no proof element at
  that level; ``processProof`` only hashes the elements it is given, so it agrees. We do
  not duplicate the odd node (Bitcoin style) because that lets two different leaf lists share
  a root (``[a, b, c]`` and ``[a, b, c, c]``).
* A tree with one leaf has that leaf as its root and an empty proof.

Leaf encoding (what goes *into* a leaf) is the caller's concern; for evidence records see
:mod:`healtrace.chain.evidence`, which domain-separates leaves from 64-byte internal nodes.

Proofs are taken from the stored levels, so building is O(n) hashes and each proof is
O(log n) list look-ups.
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_hash.auto import keccak

__all__ = ["MerkleTree", "hash_pair", "process_proof", "proof_length", "verify_proof"]

HASH_LEN = 32


def hash_pair(a: bytes, b: bytes) -> bytes:
    """OpenZeppelin's ``_hashPair``: keccak256 of the two nodes, smaller one first."""
    return keccak(a + b) if a <= b else keccak(b + a)


def _check_node(value: bytes, what: str) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != HASH_LEN:
        raise ValueError(f"{what} must be exactly {HASH_LEN} bytes")


def process_proof(leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root implied by ``leaf`` and ``proof`` (OpenZeppelin's ``processProof``)."""
    _check_node(leaf, "leaf")
    node = bytes(leaf)
    for element in proof:
        _check_node(element, "proof element")
        node = hash_pair(node, bytes(element))
    return node


def verify_proof(leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    """True when ``proof`` leads from ``leaf`` to ``root``; False for wrong-sized inputs too."""
    try:
        _check_node(root, "root")
        return process_proof(leaf, proof) == bytes(root)
    except ValueError:
        return False


def proof_length(index: int, leaf_count: int) -> int:
    """How many elements the proof of leaf ``index`` has in a tree of ``leaf_count`` leaves.

    Verifiers that know the tree size use this to reject a proof that is too short, which
    would otherwise let an internal node pose as a leaf.
    """
    if leaf_count < 1 or not 0 <= index < leaf_count:
        raise ValueError(f"leaf index {index} is outside a tree of {leaf_count} leaves")
    length, n = 0, leaf_count
    while n > 1:
        if index ^ 1 < n:
            length += 1
        index //= 2
        n = (n + 1) // 2
    return length


class MerkleTree:
    """A Merkle tree built once over ``leaves``; all levels are kept for fast proofs."""

    __slots__ = ("_levels",)

    def __init__(self, leaves: Sequence[bytes]) -> None:
        if not leaves:
            raise ValueError("a Merkle tree needs at least one leaf")
        level = [bytes(leaf) for leaf in leaves]
        for i, leaf in enumerate(level):
            if len(leaf) != HASH_LEN:
                raise ValueError(f"leaf {i} is {len(leaf)} bytes; leaves must be {HASH_LEN}")
        levels = [level]
        while len(level) > 1:
            nxt = [hash_pair(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                nxt.append(level[-1])  # odd node promoted unchanged
            levels.append(nxt)
            level = nxt
        self._levels: list[list[bytes]] = levels

    @property
    def root(self) -> bytes:
        return self._levels[-1][0]

    @property
    def leaf_count(self) -> int:
        return len(self._levels[0])

    @property
    def leaves(self) -> list[bytes]:
        return list(self._levels[0])

    def proof(self, index: int) -> list[bytes]:
        """Siblings from leaf ``index`` up to the root, in the order ``processProof`` uses."""
        if not 0 <= index < self.leaf_count:
            raise IndexError(f"leaf index {index} is outside a tree of {self.leaf_count} leaves")
        proof: list[bytes] = []
        for level in self._levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                proof.append(level[sibling])
            index //= 2
        return proof
