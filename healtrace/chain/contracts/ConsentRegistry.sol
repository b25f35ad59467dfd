// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";

/// @title HealTrace consent registry
/// @notice Patients grant a grantee access to a scope of their records until a time, and revoke
/// it whenever they like. A patient acts directly (as msg.sender) or signs an EIP-712 message
/// that anyone, typically HealTrace's custodial relayer, submits: the relayer pays the gas but
/// can neither forge a patient's decision nor replay one (per-patient nonce, deadline).
/// Signatures are checked with SignatureChecker, so a smart-contract wallet (ERC-1271) can be a
/// patient too.
contract ConsentRegistry is EIP712, Nonces {
    /// @notice One consent, identified by `grantIdOf(patient, grantee, scopeHash)`.
    /// @dev Field order packs grantee, expiresAt and revoked into one storage slot.
    struct Grant {
        address patient;
        address grantee;
        uint64 expiresAt;
        bool revoked;
        bytes32 scopeHash;
    }

    /// @notice EIP-712 type of a signed grant.
    bytes32 public constant GRANT_TYPEHASH = keccak256(
        "Grant(address patient,address grantee,bytes32 scopeHash,uint64 expiresAt,uint256 nonce,uint256 deadline)"
    );
    /// @notice EIP-712 type of a signed revocation.
    bytes32 public constant REVOKE_TYPEHASH = keccak256(
        "Revoke(address patient,address grantee,bytes32 scopeHash,uint256 nonce,uint256 deadline)"
    );

    mapping(bytes32 grantId => Grant) private _grants;

    /// @notice A grant was made or renewed (a renewal replaces the expiry and clears a revocation).
    event Granted(
        bytes32 indexed grantId,
        address indexed patient,
        address indexed grantee,
        bytes32 scopeHash,
        uint64 expiresAt
    );
    /// @notice A grant was revoked.
    event Revoked(
        bytes32 indexed grantId, address indexed patient, address indexed grantee, bytes32 scopeHash
    );

    /// @notice The grantee was the zero address.
    error ZeroGrantee();
    /// @notice The scope hash was zero.
    error ZeroScope();
    /// @notice `expiresAt` is not in the future.
    error ExpiryNotInFuture(uint64 expiresAt);
    /// @notice There is no grant with this id.
    error GrantNotFound(bytes32 grantId);
    /// @notice The grant is already revoked.
    error AlreadyRevoked(bytes32 grantId);
    /// @notice The signed message's deadline has passed.
    error ExpiredSignature(uint256 deadline);
    /// @notice The signature is not the patient's over this message.
    error InvalidSignature(address patient);

    constructor() EIP712("HealTrace ConsentRegistry", "1") {}

    /// @notice Grant (or renew) `grantee` access to `scopeHash` until `expiresAt`, as the patient.
    function grant(address grantee, bytes32 scopeHash, uint64 expiresAt)
        external
        returns (bytes32 grantId)
    {
        return _grant(msg.sender, grantee, scopeHash, expiresAt);
    }

    /// @notice Revoke the caller's grant to `grantee` for `scopeHash`.
    function revoke(address grantee, bytes32 scopeHash) external returns (bytes32 grantId) {
        return _revoke(msg.sender, grantee, scopeHash);
    }

    /// @notice Submit a grant the patient signed (EIP-712 `Grant`); `nonce` must be `nonces(patient)`.
    function grantBySig(
        address patient,
        address grantee,
        bytes32 scopeHash,
        uint64 expiresAt,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external returns (bytes32 grantId) {
        bytes32 structHash = keccak256(
            abi.encode(GRANT_TYPEHASH, patient, grantee, scopeHash, expiresAt, nonce, deadline)
        );
        _consumeSignature(patient, structHash, nonce, deadline, signature);
        return _grant(patient, grantee, scopeHash, expiresAt);
    }

    /// @notice Submit a revocation the patient signed (EIP-712 `Revoke`).
    function revokeBySig(
        address patient,
        address grantee,
        bytes32 scopeHash,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external returns (bytes32 grantId) {
        bytes32 structHash =
            keccak256(abi.encode(REVOKE_TYPEHASH, patient, grantee, scopeHash, nonce, deadline));
        _consumeSignature(patient, structHash, nonce, deadline, signature);
        return _revoke(patient, grantee, scopeHash);
    }

    /// @notice True while the grant exists, is not revoked and has not expired.
    function isGranted(address patient, address grantee, bytes32 scopeHash)
        external
        view
        returns (bool)
    {
        Grant storage g = _grants[grantIdOf(patient, grantee, scopeHash)];
        return !g.revoked && g.expiresAt > block.timestamp;
    }

    /// @notice The stored grant (all zero if there is none).
    function grants(bytes32 grantId) external view returns (Grant memory) {
        return _grants[grantId];
    }

    /// @notice The id of the grant from `patient` to `grantee` for `scopeHash`.
    function grantIdOf(address patient, address grantee, bytes32 scopeHash)
        public
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(patient, grantee, scopeHash));
    }

    /// @notice The EIP-712 domain separator of this contract on this chain.
    // solhint-disable-next-line func-name-mixedcase
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    function _grant(address patient, address grantee, bytes32 scopeHash, uint64 expiresAt)
        private
        returns (bytes32 grantId)
    {
        if (grantee == address(0)) revert ZeroGrantee();
        if (scopeHash == bytes32(0)) revert ZeroScope();
        if (expiresAt <= block.timestamp) revert ExpiryNotInFuture(expiresAt);
        grantId = grantIdOf(patient, grantee, scopeHash);
        _grants[grantId] = Grant({
            patient: patient,
            grantee: grantee,
            expiresAt: expiresAt,
            revoked: false,
            scopeHash: scopeHash
        });
        emit Granted(grantId, patient, grantee, scopeHash, expiresAt);
    }

    function _revoke(address patient, address grantee, bytes32 scopeHash)
        private
        returns (bytes32 grantId)
    {
        grantId = grantIdOf(patient, grantee, scopeHash);
        Grant storage g = _grants[grantId];
        if (g.patient == address(0)) revert GrantNotFound(grantId);
        if (g.revoked) revert AlreadyRevoked(grantId);
        g.revoked = true;
        emit Revoked(grantId, patient, grantee, scopeHash);
    }

    function _consumeSignature(
        address patient,
        bytes32 structHash,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) private {
        if (block.timestamp > deadline) revert ExpiredSignature(deadline);
        _useCheckedNonce(patient, nonce);
        bytes32 digest = _hashTypedDataV4(structHash);
        if (!SignatureChecker.isValidSignatureNowCalldata(patient, digest, signature)) {
            revert InvalidSignature(patient);
        }
    }
}
