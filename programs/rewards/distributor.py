"""The typed client of ``RewardsDistributor``: reads as records, writes as forwarder ``Call``s a
custodial wallet signs and the relayer submits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eth_abi import encode
from eth_hash.auto import keccak
from web3 import AsyncWeb3

from chain.artifacts import artifact
from chain.calls import Call
from chain.client import ChainClient
from core.errors import NotFound
from programs.rewards.merkle import RewardLeaf

PUBLISH_CALL_GAS = 200_000
CLAIM_BASE_GAS = 60_000
CLAIM_LEAF_GAS = 90_000
"""A claim's gas: the batch's base plus per leaf (the bitmap word, the reputation slot, the
transfer to a new holder) and per proof sibling."""
CLAIM_SIBLING_GAS = 1_200


def event_id_of(sponsor: str, event_ref: bytes) -> bytes:
    """``RewardsDistributor.eventIdOf``: an event's id is its sponsor's."""
    return keccak(encode(["address", "bytes32"], [sponsor, event_ref]))


def event_ref_of(event_row_id: str) -> bytes:
    """The reference a settlement publishes under: derived from the event's row id."""
    return keccak(f"ovpp-dr-event:{event_row_id}".encode())


@dataclass(frozen=True)
class Distribution:
    sponsor: str
    published_at: int
    leaf_count: int
    root: bytes
    total: int
    paid: int


@dataclass(frozen=True)
class Reputation:
    events_dispatched: int
    events_delivered: int
    delivered_wh: int
    performance_bps: int
    last_event_at: int


class RewardsDistributor:
    def __init__(self, web3: AsyncWeb3, address: str) -> None:
        self.address = AsyncWeb3.to_checksum_address(address)
        self.contract = web3.eth.contract(
            address=self.address, abi=artifact("RewardsDistributor").abi, decode_tuples=True
        )

    # -- reads ------------------------------------------------------------------------------

    async def distribution(self, event_id: bytes) -> Distribution | None:
        raw = await self.contract.functions.distribution(event_id).call()
        if bytes(raw.root) == b"\x00" * 32:
            return None
        return Distribution(
            sponsor=raw.sponsor,
            published_at=raw.publishedAt,
            leaf_count=raw.leafCount,
            root=bytes(raw.root),
            total=raw.total,
            paid=raw.paid,
        )

    async def is_claimed(self, event_id: bytes, index: int) -> bool:
        return bool(await self.contract.functions.isClaimed(event_id, index).call())

    async def verify(self, *, root: bytes, leaf: RewardLeaf, proof: Sequence[bytes]) -> bool:
        return bool(
            await self.contract.functions.verify(
                root, leaf.event_id, leaf.as_tuple(), list(proof)
            ).call()
        )

    async def reputation(self, device_id: bytes) -> Reputation:
        raw = await self.contract.functions.reputationOf(device_id).call()
        return Reputation(*raw)

    # -- writes, as the sponsor's forwarder calls ------------------------------------------------

    def publish(self, *, event_ref: bytes, root: bytes, total: int, leaf_count: int) -> Call:
        data = self.contract.encode_abi("publish", args=[event_ref, root, total, leaf_count])
        return Call(target=self.address, data=bytes.fromhex(data[2:]), gas=PUBLISH_CALL_GAS)

    def claim_many(
        self, *, event_id: bytes, leaves: Sequence[RewardLeaf], proofs: Sequence[Sequence[bytes]]
    ) -> Call:
        data = self.contract.encode_abi(
            "claimMany",
            args=[event_id, [leaf.as_tuple() for leaf in leaves], [list(p) for p in proofs]],
        )
        gas = CLAIM_BASE_GAS + sum(CLAIM_LEAF_GAS + CLAIM_SIBLING_GAS * len(p) for p in proofs)
        return Call(target=self.address, data=bytes.fromhex(data[2:]), gas=gas)


def distributor_of(chain: ChainClient) -> RewardsDistributor:
    addresses = chain.addresses
    if addresses is None or not addresses.rewards_distributor:
        raise NotFound("the rewards distributor is not deployed on this chain")
    return RewardsDistributor(chain.web3, addresses.rewards_distributor)
