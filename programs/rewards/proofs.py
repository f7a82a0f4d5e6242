"""An event's Merkle tree rebuilt from its stored records (leaves are a pure function of them),
kept per process: a settled tree never changes."""

from __future__ import annotations

from dataclasses import dataclass

from cachetools import LRUCache

from programs.deps import ProgramServices
from programs.rewards import repository
from programs.rewards.merkle import MerkleTree, RewardLeaf, build_tree, leaf_hash
from programs.rewards.models import ContributionRecord, RewardSettlement

_TREES: LRUCache[str, SettlementTree] = LRUCache(maxsize=64)


@dataclass(frozen=True)
class SettlementTree:
    leaves: list[RewardLeaf]  # by leaf index
    tree: MerkleTree

    @property
    def root(self) -> bytes:
        return self.tree.root

    def proof_of(self, index: int) -> list[bytes]:
        return self.tree.proof(leaf_hash(self.leaves[index]))


def leaf_of(record: ContributionRecord, settlement: RewardSettlement) -> RewardLeaf:
    return RewardLeaf(
        index=record.leaf_index,
        device_id=bytes.fromhex(record.device_id.removeprefix("0x")),
        recipient=record.recipient,
        amount=record.amount,
        contribution_wh=record.delivered_wh,
        event_id=bytes.fromhex(settlement.chain_event_id.removeprefix("0x")),
        performance_bps=record.performance_bps,
    )


async def tree_of(services: ProgramServices, settlement: RewardSettlement) -> SettlementTree:
    cached = _TREES.get(settlement.id)
    if cached is not None:
        return cached
    async with services.db.session() as session:
        records = await repository.records_of(session, settlement.id)
    leaves = [leaf_of(record, settlement) for record in records]
    built = SettlementTree(leaves=leaves, tree=build_tree([leaf_hash(leaf) for leaf in leaves]))
    if "0x" + built.root.hex() != settlement.root:
        raise RuntimeError(f"settlement {settlement.id}: its records no longer give its root")
    _TREES[settlement.id] = built
    return built
