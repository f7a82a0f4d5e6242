// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";
import {ERC2771Context} from "@openzeppelin/contracts/metatx/ERC2771Context.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Context} from "@openzeppelin/contracts/utils/Context.sol";

/**
 * @title OpenVPP Token (OVPP)
 * @notice The 18-decimal OpenVPP utility token held in customers' custodial wallets.
 * @dev Gas sponsorship: OVPP's home chain, Odyssey (Dione Protocol's D-Chain), is a fork of
 * Avalanche's C-Chain built on go-ethereum 1.12. It has no Prague fork and therefore no
 * EIP-7702, so externally owned accounts cannot delegate to code that would let a relayer
 * pay their gas. Instead the token supports two sponsorship paths that work on that chain:
 *  - ERC-2771 meta-transactions: a wallet key signs an `OVPPForwarder` request, the relayer
 *    submits it, and the forwarder calls this contract with the signer's address appended
 *    to the calldata. `_msgSender()` returns that signer (only when the caller is the
 *    trusted forwarder fixed at deployment), so `transfer`, `approve`, etc. act for the
 *    signer while the relayer pays the gas.
 *  - EIP-2612 `permit`: an off-chain signed approval that anyone can submit.
 * Compiled for the `shanghai` EVM: Odyssey has no Cancun-only opcodes.
 * Accounts holding MINTER_ROLE may mint; DEFAULT_ADMIN_ROLE manages roles.
 */
contract OVPPToken is ERC20, ERC20Permit, ERC2771Context, AccessControl {
    /// @notice Role allowed to call {mint}.
    bytes32 public constant MINTER_ROLE = keccak256("MINTER_ROLE");

    /**
     * @param trustedForwarder The ERC-2771 forwarder (an `OVPPForwarder`) whose calls are
     *        attributed to the address appended to their calldata. Immutable.
     * @param admin Receives DEFAULT_ADMIN_ROLE and MINTER_ROLE.
     */
    constructor(address trustedForwarder, address admin)
        ERC20("OpenVPP Token", "OVPP")
        ERC20Permit("OpenVPP Token")
        ERC2771Context(trustedForwarder)
    {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(MINTER_ROLE, admin);
    }

    /// @notice Mints `amount` base units (18 decimals) to `to`.
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
