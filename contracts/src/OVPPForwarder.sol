// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC2771Forwarder} from "@openzeppelin/contracts/metatx/ERC2771Forwarder.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Errors} from "@openzeppelin/contracts/utils/Errors.sol";

/**
 * @title OVPPForwarder
 * @notice The project's own ERC-2771 trusted forwarder. No forwarder deployment exists on
 *         Odyssey, and Odyssey has no EIP-7702, so relayers sponsor gas by submitting
 *         signed `ForwardRequest`s here; the forwarder checks the EIP-712 signature, nonce and
 *         deadline, and calls the target with the signer's address appended to the calldata.
 *
 *         Only relayers the owner authorized may submit. A request whose transaction failed
 *         stays validly signed until its deadline, and it becomes executable again as soon as
 *         the wallet's nonce reaches the request's nonce: after a failure the backend signs the
 *         wallet's next requests from the forwarder's nonce, so a failed request published in
 *         a reverted transaction could otherwise be submitted by anyone (its recipient, say)
 *         and move money the backend reported as not sent. The backend's relayers never
 *         submit a failed request again.
 * @dev EIP-712 domain name "OVPPForwarder", version "1". Compiled for the `shanghai` EVM.
 */
contract OVPPForwarder is ERC2771Forwarder, Ownable {
    /// @notice Accounts allowed to submit forward requests.
    mapping(address account => bool) public isRelayer;

    event RelayerSet(address indexed account, bool allowed);

    /// @dev `caller` is not an authorized relayer.
    error OVPPForwarderUnauthorizedRelayer(address caller);

    constructor(address initialOwner) ERC2771Forwarder("OVPPForwarder") Ownable(initialOwner) {}

    modifier onlyRelayer() {
        if (!isRelayer[msg.sender]) {
            revert OVPPForwarderUnauthorizedRelayer(msg.sender);
        }
        _;
    }

    /// @notice Allows or stops `account` submitting forward requests.
    function setRelayer(address account, bool allowed) external onlyOwner {
        isRelayer[account] = allowed;
        emit RelayerSet(account, allowed);
    }

    function execute(ForwardRequestData calldata request) public payable virtual override onlyRelayer {
        super.execute(request);
    }

    function executeBatch(ForwardRequestData[] calldata requests, address payable refundReceiver)
        public
        payable
        virtual
        override
        onlyRelayer
    {
        super.executeBatch(requests, refundReceiver);
    }

    /**
     * @notice Executes every request or none: reverts if any request is invalid or any call
     *         reverts. The relayer bundles a customer's action with its fee payment this way,
     *         so the action cannot run without the fee and the fee cannot be taken without the
     *         action.
     * @dev OpenZeppelin's `executeBatch` with no refund receiver only requires every request
     *      to be *valid*; a call that reverts is skipped (its nonce still used) and the batch
     *      goes on. That is not enough for a fee bundle, hence this function.
     */
    function executeAll(ForwardRequestData[] calldata requests) public payable virtual onlyRelayer {
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
