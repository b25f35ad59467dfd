// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

/// @title HealTrace evidence registry
/// @notice Records when the Merkle root of a batch of evidence records was anchored. A root is
/// anchored once and never changed, so `anchoredAt(root)` is a fixed point in time anyone can
/// check. Leaves are proven with OpenZeppelin's sorted-pair Merkle proofs, the shape that
/// `healtrace.chain.merkle.MerkleTree` builds.
contract EvidenceRegistry is AccessControl {
    /// @notice May anchor batch roots (the HealTrace anchoring service's key).
    bytes32 public constant ANCHORER_ROLE = keccak256("ANCHORER_ROLE");

    /// @dev Block time of the anchoring; 0 means "never anchored".
    mapping(bytes32 root => uint64 timestamp) private _anchoredAt;

    /// @notice A batch root was anchored. Verifiers match on this exact signature.
    event Anchored(bytes32 indexed root, uint32 leafCount, string batchUri, uint64 timestamp);

    /// @notice An address argument that must be set was zero.
    error ZeroAddress();
    /// @notice `anchor` was given the zero root.
    error ZeroRoot();
    /// @notice `anchor` was given a batch of zero leaves.
    error ZeroLeafCount();
    /// @notice The root was anchored before, at `timestamp`; roots are never re-anchored.
    error AlreadyAnchored(bytes32 root, uint64 timestamp);

    /// @param admin holds DEFAULT_ADMIN_ROLE (grants and revokes anchorers)
    /// @param anchorer holds ANCHORER_ROLE from the start
    constructor(address admin, address anchorer) {
        if (admin == address(0) || anchorer == address(0)) revert ZeroAddress();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(ANCHORER_ROLE, anchorer);
    }

    /// @notice Anchor the Merkle `root` of a batch of `leafCount` records described at `batchUri`.
    function anchor(bytes32 root, uint32 leafCount, string calldata batchUri)
        external
        onlyRole(ANCHORER_ROLE)
    {
        if (root == bytes32(0)) revert ZeroRoot();
        if (leafCount == 0) revert ZeroLeafCount();
        uint64 previous = _anchoredAt[root];
        if (previous != 0) revert AlreadyAnchored(root, previous);
        uint64 timestamp = uint64(block.timestamp);
        _anchoredAt[root] = timestamp;
        emit Anchored(root, leafCount, batchUri, timestamp);
    }

    /// @notice Block time at which `root` was anchored, or 0 if it never was.
    function anchoredAt(bytes32 root) external view returns (uint64) {
        return _anchoredAt[root];
    }

    /// @notice True when `root` is anchored and `proof` leads from `leaf` to it.
    function verify(bytes32 root, bytes32[] calldata proof, bytes32 leaf)
        external
        view
        returns (bool)
    {
        return _anchoredAt[root] != 0 && MerkleProof.verifyCalldata(proof, root, leaf);
    }
}
