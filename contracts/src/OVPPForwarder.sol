// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC2771Forwarder} from "@openzeppelin/contracts/metatx/ERC2771Forwarder.sol";

/**
 * @title OVPPForwarder
 * @notice The project's own ERC-2771 trusted forwarder. No forwarder deployment exists on
 *         Odyssey, and Odyssey has no EIP-7702, so relayers sponsor gas by submitting
 *         signed `ForwardRequest`s here (`execute` / `executeBatch`); the forwarder checks
 *         the EIP-712 signature, nonce and deadline, and calls the target token with the
 *         signer's address appended to the calldata.
 * @dev EIP-712 domain name "OVPPForwarder", version "1". Compiled for the `shanghai` EVM.
 */
contract OVPPForwarder is ERC2771Forwarder {
    constructor() ERC2771Forwarder("OVPPForwarder") {}
}
