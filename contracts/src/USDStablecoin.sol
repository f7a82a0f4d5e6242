// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";
import {ERC2771Context} from "@openzeppelin/contracts/metatx/ERC2771Context.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Context} from "@openzeppelin/contracts/utils/Context.sol";

/**
 * @title USD Coin (local)
 * @notice A 6-decimal, USDC-like stablecoin with EIP-2612 permit, deployed ONLY on local and
 *         test chains. On real chains the stablecoin address is configuration and this
 *         contract is not deployed.
 * @dev Same shape as `OVPPToken`: ERC-2771 meta-transactions through the trusted
 *      `OVPPForwarder` (Odyssey has no EIP-7702, so gas sponsorship uses ERC-2771 and
 *      EIP-2612), AccessControl with MINTER_ROLE. Compiled for the `shanghai` EVM.
 */
contract USDStablecoin is ERC20, ERC20Permit, ERC2771Context, AccessControl {
    /// @notice Role allowed to call {mint}.
    bytes32 public constant MINTER_ROLE = keccak256("MINTER_ROLE");

    /**
     * @param trustedForwarder The ERC-2771 forwarder (an `OVPPForwarder`). Immutable.
     * @param admin Receives DEFAULT_ADMIN_ROLE and MINTER_ROLE.
     */
    constructor(address trustedForwarder, address admin)
        ERC20("USD Coin (local)", "USDC")
        ERC20Permit("USD Coin (local)")
        ERC2771Context(trustedForwarder)
    {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(MINTER_ROLE, admin);
    }

    /// @notice 6 decimals, like USDC.
    function decimals() public pure override returns (uint8) {
        return 6;
    }

    /// @notice Mints `amount` base units (6 decimals) to `to`.
    function mint(address to, uint256 amount) external onlyRole(MINTER_ROLE) {
        _mint(to, amount);
    }

    /// @dev Meta-transactions from the trusted forwarder are attributed to the signer.
    function _msgSender() internal view override(Context, ERC2771Context) returns (address) {
        return ERC2771Context._msgSender();
    }

    /// @dev Strips the appended signer address from forwarded calldata.
    function _msgData() internal view override(Context, ERC2771Context) returns (bytes calldata) {
        return ERC2771Context._msgData();
    }

    /// @dev 20 bytes: the length of the signer address the forwarder appends.
    function _contextSuffixLength() internal view override(Context, ERC2771Context) returns (uint256) {
        return ERC2771Context._contextSuffixLength();
    }
}
