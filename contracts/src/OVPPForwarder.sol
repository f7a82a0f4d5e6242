// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC2771Forwarder} from "@openzeppelin/contracts/metatx/ERC2771Forwarder.sol";
import {Errors} from "@openzeppelin/contracts/utils/Errors.sol";

/**
 * @title OVPPForwarder
 * @notice The project's own ERC-2771 trusted forwarder. No forwarder deployment exists on
 *         Odyssey, and Odyssey has no EIP-7702, so relayers sponsor gas by submitting
 *         signed `ForwardRequest`s here; the forwarder checks the EIP-712 signature, nonce and
 *         deadline, and calls the target with the signer's address appended to the calldata.
 * @dev EIP-712 domain name "OVPPForwarder", version "1". Compiled for the `shanghai` EVM.
 */
contract OVPPForwarder is ERC2771Forwarder {
    constructor() ERC2771Forwarder("OVPPForwarder") {}

    /**
     * @notice Executes every request or none: reverts if any request is invalid or any call
     *         reverts. The relayer bundles a customer's action with its fee payment this way,
     *         so the action cannot run without the fee and the fee cannot be taken without the
     *         action.
     * @dev OpenZeppelin's `executeBatch` with no refund receiver only requires every request
     *      to be *valid*; a call that reverts is skipped (its nonce still used) and the batch
     *      goes on. That is not enough for a fee bundle, hence this function.
     */
    function executeAll(ForwardRequestData[] calldata requests) public payable virtual {
        uint256 requestsValue;
        for (uint256 i; i < requests.length; ++i) {
            requestsValue += requests[i].value;
            if (!_execute(requests[i], true)) {
                revert Errors.FailedCall();
            }
        }
        if (msg.value != requestsValue) {
            revert ERC2771ForwarderMismatchedValue(requestsValue, msg.value);
        }
    }
}
