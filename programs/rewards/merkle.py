"""The Merkle tree of an event's rewards, built exactly as OpenZeppelin's ``StandardMerkleTree``
builds it (so its JavaScript library gives the same root and proofs): a leaf is
``keccak256(keccak256(abi.encode(values)))``, leaves sorted by hash, the tree stored as an array
(the root at 0, node ``i``'s children at ``2i + 1`` and ``2i + 2``), pairs hashed sorted, as
``MerkleProof`` verifies them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eth_abi import encode
from eth_hash.auto import keccak

LEAF_TYPES = ("uint256", "bytes32", "address", "uint256", "uint64", "bytes32", "uint16")
"""(index, deviceId, recipient, amount, contributionWh, eventId, performanceBps): the leaf of
``RewardsDistributor.leafHash``."""


@dataclass(frozen=True)
class RewardLeaf:
    index: int
    device_id: bytes
    recipient: str
    amount: int
    contribution_wh: int
    event_id: bytes
    performance_bps: int

    def values(self) -> tuple:
        return (
            self.index,
            self.device_id,
            self.recipient,
            self.amount,
            self.contribution_wh,
            self.event_id,
            self.performance_bps,
        )

    def as_tuple(self) -> tuple:
        """The contract's ``Leaf`` struct (the event id travels beside it)."""
        return (
            self.index,
            self.device_id,
            self.recipient,
            self.amount,
            self.contribution_wh,
            self.performance_bps,
        )


def leaf_hash(leaf: RewardLeaf) -> bytes:
    return keccak(keccak(encode(list(LEAF_TYPES), list(leaf.values()))))


def hash_pair(a: bytes, b: bytes) -> bytes:
    return keccak(a + b if a < b else b + a)


@dataclass(frozen=True)
class MerkleTree:
    nodes: tuple[bytes, ...]
    positions: dict[bytes, int]  # leaf hash → its node index

    @property
    def root(self) -> bytes:
        return self.nodes[0]

    def proof(self, leaf: bytes) -> list[bytes]:
        """The siblings from the leaf up to the root."""
        index = self.positions[leaf]
        siblings = []
        while index > 0:
            siblings.append(self.nodes[index - 1 if index % 2 == 0 else index + 1])
            index = (index - 1) // 2
        return siblings


def build_tree(leaf_hashes: Sequence[bytes]) -> MerkleTree:
    if not leaf_hashes:
        raise ValueError("a tree needs at least one leaf")
    ordered = sorted(leaf_hashes)
    size = 2 * len(ordered) - 1
    nodes: list[bytes] = [b""] * size
    positions: dict[bytes, int] = {}
    for i, leaf in enumerate(ordered):
        nodes[size - 1 - i] = leaf
        positions[leaf] = size - 1 - i
    for i in range(size - 1 - len(ordered), -1, -1):
        nodes[i] = hash_pair(nodes[2 * i + 1], nodes[2 * i + 2])
    return MerkleTree(nodes=tuple(nodes), positions=positions)


def verify(proof: Sequence[bytes], root: bytes, leaf: bytes) -> bool:
    computed = leaf
    for sibling in proof:
        computed = hash_pair(computed, sibling)
    return computed == root
