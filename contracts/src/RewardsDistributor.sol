// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC2771Context} from "@openzeppelin/contracts/metatx/ERC2771Context.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {BitMaps} from "@openzeppelin/contracts/utils/structs/BitMaps.sol";

/**
 * @title OpenVPP Rewards Distributor
 * @notice Pays demand-response rewards in OVPP against one Merkle root per settled event, and
 *         keeps each device's reputation (events dispatched and delivered, energy delivered,
 *         average performance).
 *
 * A program's sponsor (the utility's wallet) publishes an event's root and funds it with the
 * event's total in the same call ({publish}: `transferFrom` sponsor -> this contract, so the
 * sponsor approves first, or approves and publishes in one atomic forwarder batch). The event's
 * id is `keccak256(abi.encode(sponsor, eventRef))` ({eventIdOf}): nobody can publish under
 * another sponsor's ids. Each leaf is
 *
 *     keccak256(bytes.concat(keccak256(abi.encode(
 *         uint256 index, bytes32 deviceId, address recipient, uint256 amount,
 *         uint64 contributionWh, bytes32 eventId, uint16 performanceBps))))
 *
 * (OpenZeppelin StandardMerkleTree encoding, sorted-pair hashing), one per device the event
 * was dispatched to, zero-amount leaves included. A leaf is settled once (a bitmap per event):
 * settling pays its amount to its recipient and, in the same transaction, adds the event to the
 * device's reputation; a device that opted out or sent nothing has a zero leaf and so loses
 * standing. Anyone may settle a leaf (it pays its recipient, never the caller) and anyone may
 * check a leaf against a root with {verify} / {verifyClaim}. An event never pays out more than
 * its sponsor funded. ERC-2771 through the project's forwarder, so sponsors act gaslessly.
 * Compiled for the `shanghai` EVM.
 */
contract RewardsDistributor is ERC2771Context {
    using SafeERC20 for IERC20;
    using BitMaps for BitMaps.BitMap;

    /// @notice The highest performance a leaf may state: 100 %.
    uint16 public constant MAX_PERFORMANCE_BPS = 10_000;

    struct Distribution {
        address sponsor;
        uint64 publishedAt;
        uint32 leafCount;
        bytes32 root;
        uint128 total;
        uint128 paid;
    }

    struct Leaf {
        uint256 index;
        bytes32 deviceId;
        address recipient;
        uint256 amount;
        uint64 contributionWh;
        uint16 performanceBps;
    }

    /// @dev One storage slot per device.
    struct Reputation {
        uint32 eventsDispatched;
        uint32 eventsDelivered;
        uint64 deliveredWh;
        uint64 performanceBpsSum;
        uint64 lastEventAt;
    }

    IERC20 public immutable ovppToken;

    mapping(bytes32 eventId => Distribution) private _distributions;
    mapping(bytes32 eventId => BitMaps.BitMap) private _settled;
    mapping(bytes32 deviceId => Reputation) private _reputations;

    event Published(
        bytes32 indexed eventId, address indexed sponsor, bytes32 eventRef, bytes32 root, uint256 total, uint32 leafCount
    );
    event Claimed(
        bytes32 indexed eventId,
        uint256 index,
        bytes32 indexed deviceId,
        address indexed recipient,
        uint256 amount,
        uint64 contributionWh,
        uint16 performanceBps
    );

    error ZeroAddress();
    error EmptyRoot();
    error NoLeaves();
    error AlreadyPublished(bytes32 eventId);
    error UnknownEvent(bytes32 eventId);
    error IndexOutOfRange(bytes32 eventId, uint256 index);
    error PerformanceOutOfRange(uint16 performanceBps);
    error InvalidProof(bytes32 eventId, uint256 index);
    error AlreadyClaimed(bytes32 eventId, uint256 index);
    error OverFunded(bytes32 eventId, uint256 paid, uint256 total);
    error LengthMismatch(uint256 leaves, uint256 proofs);

    constructor(address trustedForwarder, IERC20 ovppToken_) ERC2771Context(trustedForwarder) {
        if (address(ovppToken_) == address(0)) revert ZeroAddress();
        ovppToken = ovppToken_;
    }

    // ------------------------------------------------------------------ sponsor

    /**
     * @notice Publish an event's root and fund it with `total` OVPP from the caller (who must
     *         have approved this contract). Returns the event's id.
     */
    function publish(bytes32 eventRef, bytes32 root, uint256 total, uint32 leafCount)
        external
        returns (bytes32 eventId)
    {
        if (root == bytes32(0)) revert EmptyRoot();
        if (leafCount == 0) revert NoLeaves();
        address sponsor = _msgSender();
        eventId = eventIdOf(sponsor, eventRef);
        Distribution storage d = _distributions[eventId];
        if (d.root != bytes32(0)) revert AlreadyPublished(eventId);
        d.sponsor = sponsor;
        d.publishedAt = uint64(block.timestamp);
        d.leafCount = leafCount;
        d.root = root;
        d.total = uint128(total);
        emit Published(eventId, sponsor, eventRef, root, total, leafCount);
        // Interaction last; reverts (undoing the publication) unless the sponsor can pay.
        if (total != 0) ovppToken.safeTransferFrom(sponsor, address(this), total);
    }

    // ------------------------------------------------------------------ settling leaves

    /// @notice Settle one leaf: pay its recipient and add the event to the device's reputation.
    function claim(bytes32 eventId, Leaf calldata leaf, bytes32[] calldata proof) external {
        Distribution storage d = _distributions[eventId];
        if (d.root == bytes32(0)) revert UnknownEvent(eventId);
        if (!_settle(d, eventId, leaf, proof)) revert AlreadyClaimed(eventId, leaf.index);
    }

    /**
     * @notice Settle many leaves of one event in one transaction. Leaves already settled are
     *         skipped (so a batch sent again after a crash pays nobody twice); an invalid proof
     *         reverts the whole batch. Returns how many leaves this call settled.
     */
    function claimMany(bytes32 eventId, Leaf[] calldata leaves, bytes32[][] calldata proofs)
        external
        returns (uint256 settled)
    {
        if (leaves.length != proofs.length) revert LengthMismatch(leaves.length, proofs.length);
        Distribution storage d = _distributions[eventId];
        if (d.root == bytes32(0)) revert UnknownEvent(eventId);
        for (uint256 i; i < leaves.length; ++i) {
            if (_settle(d, eventId, leaves[i], proofs[i])) ++settled;
        }
    }

    // ------------------------------------------------------------------ views

    function eventIdOf(address sponsor, bytes32 eventRef) public pure returns (bytes32) {
        return keccak256(abi.encode(sponsor, eventRef));
    }

    /// @notice The StandardMerkleTree leaf hash of `leaf` in event `eventId`.
    function leafHash(bytes32 eventId, Leaf calldata leaf) public pure returns (bytes32) {
        return keccak256(
            bytes.concat(
                keccak256(
                    abi.encode(
                        leaf.index,
                        leaf.deviceId,
                        leaf.recipient,
                        leaf.amount,
                        leaf.contributionWh,
                        eventId,
                        leaf.performanceBps
                    )
                )
            )
        );
    }

    /// @notice Whether `leaf` of event `eventId` belongs to the tree of `root`.
    function verify(bytes32 root, bytes32 eventId, Leaf calldata leaf, bytes32[] calldata proof)
        external
        pure
        returns (bool)
    {
        return MerkleProof.verifyCalldata(proof, root, leafHash(eventId, leaf));
    }

    /// @notice Whether `leaf` belongs to the published root of event `eventId`.
    function verifyClaim(bytes32 eventId, Leaf calldata leaf, bytes32[] calldata proof)
        external
        view
        returns (bool)
    {
        bytes32 root = _distributions[eventId].root;
        return root != bytes32(0) && MerkleProof.verifyCalldata(proof, root, leafHash(eventId, leaf));
    }

    function isClaimed(bytes32 eventId, uint256 index) external view returns (bool) {
        return _settled[eventId].get(index);
    }

    function distribution(bytes32 eventId) external view returns (Distribution memory) {
        return _distributions[eventId];
    }

    /// @notice A device's record: events dispatched and delivered, Wh delivered, the average
    ///         performance over its dispatched events (basis points), its last settled event.
    function reputationOf(bytes32 deviceId)
        external
        view
        returns (
            uint32 eventsDispatched,
            uint32 eventsDelivered,
            uint64 deliveredWh,
            uint16 performanceBps,
            uint64 lastEventAt
        )
    {
        Reputation storage r = _reputations[deviceId];
        eventsDispatched = r.eventsDispatched;
        eventsDelivered = r.eventsDelivered;
        deliveredWh = r.deliveredWh;
        performanceBps = eventsDispatched == 0 ? 0 : uint16(r.performanceBpsSum / eventsDispatched);
        lastEventAt = r.lastEventAt;
    }

    // ------------------------------------------------------------------ ERC-2771 plumbing

    function _contextSuffixLength() internal view override returns (uint256) {
        return ERC2771Context._contextSuffixLength();
    }

    // ------------------------------------------------------------------ internals

    /// @dev Settles `leaf` unless it was settled already (then returns false).
    function _settle(Distribution storage d, bytes32 eventId, Leaf calldata leaf, bytes32[] calldata proof)
        private
        returns (bool)
    {
        if (leaf.index >= d.leafCount) revert IndexOutOfRange(eventId, leaf.index);
        if (leaf.performanceBps > MAX_PERFORMANCE_BPS) revert PerformanceOutOfRange(leaf.performanceBps);
        BitMaps.BitMap storage settled = _settled[eventId];
        if (settled.get(leaf.index)) return false;
        if (!MerkleProof.verifyCalldata(proof, d.root, leafHash(eventId, leaf))) {
            revert InvalidProof(eventId, leaf.index);
        }
        settled.set(leaf.index);
        uint256 paid = uint256(d.paid) + leaf.amount;
        if (paid > d.total) revert OverFunded(eventId, paid, d.total);
        d.paid = uint128(paid);

        Reputation storage r = _reputations[leaf.deviceId];
        r.eventsDispatched += 1;
        if (leaf.contributionWh > 0) r.eventsDelivered += 1;
        r.deliveredWh += leaf.contributionWh;
        r.performanceBpsSum += leaf.performanceBps;
        r.lastEventAt = d.publishedAt;

        emit Claimed(
            eventId, leaf.index, leaf.deviceId, leaf.recipient, leaf.amount, leaf.contributionWh, leaf.performanceBps
        );
        if (leaf.amount != 0) ovppToken.safeTransfer(leaf.recipient, leaf.amount);
        return true;
    }
}
