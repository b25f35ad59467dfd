// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Capped} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Capped.sol";
import {ERC20Pausable} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Pausable.sol";

/// @title HealTrace health-behaviour reward token
/// @notice A capped, pausable ERC-20 (18 decimals). Rewards are minted in batches keyed by a
/// batch id that can be used once, so a rewards batcher that restarts mid-flight and resubmits
/// a batch cannot mint it twice.
contract HealthToken is ERC20, ERC20Capped, ERC20Pausable, AccessControl {
    /// @notice May mint, singly or in batches.
    bytes32 public constant MINTER_ROLE = keccak256("MINTER_ROLE");
    /// @notice May pause and unpause transfers and mints.
    bytes32 public constant PAUSER_ROLE = keccak256("PAUSER_ROLE");

    mapping(bytes32 batchId => bool minted) private _batchMinted;

    /// @notice Batch `batchId` minted `total` tokens to `recipients` recipients.
    event BatchMinted(bytes32 indexed batchId, uint256 recipients, uint256 total);

    /// @notice An address argument that must be set was zero.
    error ZeroAddress();
    /// @notice `mintBatch` was given the zero batch id (almost always an unset variable).
    error ZeroBatchId();
    /// @notice Batch `batchId` was minted before; batches are minted at most once.
    error BatchAlreadyMinted(bytes32 batchId);
    /// @notice `mintBatch` got `recipients` addresses but `amounts` amounts.
    error LengthMismatch(uint256 recipients, uint256 amounts);

    /// @param name_ token name
    /// @param symbol_ token symbol
    /// @param cap_ maximum total supply, in the smallest unit (18 decimals)
    /// @param admin holds DEFAULT_ADMIN_ROLE and grants MINTER_ROLE and PAUSER_ROLE
    constructor(string memory name_, string memory symbol_, uint256 cap_, address admin)
        ERC20(name_, symbol_)
        ERC20Capped(cap_)
    {
        if (admin == address(0)) revert ZeroAddress();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @notice Mint `amount` to `to`.
    function mint(address to, uint256 amount) external onlyRole(MINTER_ROLE) {
        _mint(to, amount);
    }

    /// @notice Mint `amounts[i]` to `to[i]` for every i, once per `batchId`.
    function mintBatch(bytes32 batchId, address[] calldata to, uint256[] calldata amounts)
        external
        onlyRole(MINTER_ROLE)
    {
        if (batchId == bytes32(0)) revert ZeroBatchId();
        if (_batchMinted[batchId]) revert BatchAlreadyMinted(batchId);
        if (to.length != amounts.length) revert LengthMismatch(to.length, amounts.length);
        _batchMinted[batchId] = true;
        uint256 total = 0;
        for (uint256 i = 0; i < to.length; ++i) {
            _mint(to[i], amounts[i]);
            total += amounts[i];
        }
        emit BatchMinted(batchId, to.length, total);
    }

    /// @notice Whether batch `batchId` has been minted.
    function batchMinted(bytes32 batchId) external view returns (bool) {
        return _batchMinted[batchId];
    }

    /// @notice Stop transfers and mints until `unpause`.
    function pause() external onlyRole(PAUSER_ROLE) {
        _pause();
    }

    /// @notice Allow transfers and mints again.
    function unpause() external onlyRole(PAUSER_ROLE) {
        _unpause();
    }

    /// @dev Every balance change passes the cap check (mints) and the pause check.
    function _update(address from, address to, uint256 value)
        internal
        override(ERC20, ERC20Capped, ERC20Pausable)
    {
        super._update(from, to, value);
    }
}
