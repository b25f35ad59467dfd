"""Merkle trees: hand-computed roots, every proof verifies, tampering fails, and an independent
re-implementation of OpenZeppelin's ``MerkleProof.processProof`` agrees."""

from __future__ import annotations

import hashlib

import pytest
from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from healtrace.chain.merkle import MerkleTree, proof_length, verify_proof


def leaf(i: int) -> bytes:
    return hashlib.sha256(f"leaf-{i}".encode()).digest()


def oz_process_proof(leaf_: bytes, proof: list[bytes]) -> bytes:
    """Written from the Solidity source's description, independently of healtrace.chain.merkle:
    ``computedHash = _hashPair(computedHash, proof[i])`` where ``_hashPair`` puts the smaller
    uint256 first (comparing as big-endian integers)."""
    computed = leaf_
    for element in proof:
        a, b = int.from_bytes(computed, "big"), int.from_bytes(element, "big")
        lo, hi = (a, b) if a < b else (b, a)
        computed = keccak(lo.to_bytes(32, "big") + hi.to_bytes(32, "big"))
    return computed


def h(a: bytes, b: bytes) -> bytes:
    return keccak(min(a, b) + max(a, b))


def test_single_leaf_is_its_own_root() -> None:
    tree = MerkleTree([leaf(0)])
    assert tree.root == leaf(0) and tree.proof(0) == [] and tree.leaf_count == 1
    assert verify_proof(leaf(0), [], leaf(0))


def test_known_small_trees_by_hand() -> None:
    a, b, c, d, e = (leaf(i) for i in range(5))
    assert MerkleTree([a, b]).root == h(a, b)
    # Odd node promoted: [a, b, c] -> [h(a,b), c] -> h(h(a,b), c)
    three = MerkleTree([a, b, c])
    assert three.root == h(h(a, b), c)
    assert three.proof(2) == [h(a, b)] and three.proof(0) == [b, c]
    assert MerkleTree([a, b, c, d]).root == h(h(a, b), h(c, d))
    five = MerkleTree([a, b, c, d, e])
    assert five.root == h(h(h(a, b), h(c, d)), e)
    assert five.proof(4) == [h(h(a, b), h(c, d))]
    assert five.proof(3) == [c, h(a, b), e]
    # Promotion rather than duplication: [a,b,c] and [a,b,c,c] have different roots.
    assert MerkleTree([a, b, c, c]).root != three.root


@pytest.mark.parametrize("size", range(1, 41))
def test_every_proof_verifies(size: int) -> None:
    leaves = [leaf(i) for i in range(size)]
    tree = MerkleTree(leaves)
    for i, lf in enumerate(leaves):
        proof = tree.proof(i)
        assert len(proof) == proof_length(i, size)
        assert verify_proof(lf, proof, tree.root)
        assert oz_process_proof(lf, proof) == tree.root


def test_tampering_fails() -> None:
    leaves = [leaf(i) for i in range(13)]
    tree = MerkleTree(leaves)
    proof = tree.proof(6)
    assert verify_proof(leaves[6], proof, tree.root)
    assert not verify_proof(leaf(99), proof, tree.root)
    assert not verify_proof(leaves[6], proof, leaf(99))
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = bytes([bad[i][0] ^ 1]) + bad[i][1:]
        assert not verify_proof(leaves[6], bad, tree.root)
    assert not verify_proof(leaves[6], proof[:-1], tree.root)
    assert not verify_proof(leaves[6], [*proof, leaf(0)], tree.root)
    assert not verify_proof(leaves[6], proof, tree.root[:31])  # wrong size is just False


def test_duplicate_leaves_are_allowed() -> None:
    leaves = [leaf(1)] * 7
    tree = MerkleTree(leaves)
    for i in range(7):
        assert verify_proof(leaf(1), tree.proof(i), tree.root)


def test_leaves_must_be_32_bytes() -> None:
    with pytest.raises(ValueError, match="32"):
        MerkleTree([leaf(0), b"short"])
    with pytest.raises(ValueError):
        MerkleTree([])
    with pytest.raises(IndexError):
        MerkleTree([leaf(0)]).proof(1)
    with pytest.raises(ValueError):
        proof_length(3, 3)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=70),
    st.data(),
)
def test_random_trees(leaves: list[bytes], data: st.DataObject) -> None:
    tree = MerkleTree(leaves)
    i = data.draw(st.integers(0, len(leaves) - 1))
    proof = tree.proof(i)
    assert verify_proof(leaves[i], proof, tree.root)
    assert oz_process_proof(leaves[i], proof) == tree.root
    assert len(proof) == proof_length(i, len(leaves))
    other = data.draw(st.binary(min_size=32, max_size=32))
    if other not in leaves and other != tree.root:
        assert not verify_proof(other, proof, tree.root)


def test_large_tree_spot_check() -> None:
    leaves = [keccak(i.to_bytes(4, "big")) for i in range(10_001)]
    tree = MerkleTree(leaves)
    for i in (0, 1, 4_999, 10_000):
        assert oz_process_proof(leaves[i], tree.proof(i)) == tree.root
