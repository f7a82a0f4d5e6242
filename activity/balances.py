"""A wallet's balances as the index holds them, and what is in flight on top of them."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from activity.feed import FeedContext, in_flight_jobs
from indexer.repository import wallet_balances


@dataclass(frozen=True)
class IndexedBalances:
    as_of_block: int | None
    """The index's block (``None``: nothing indexed yet): ``raw`` is ``balanceOf`` there."""
    as_of_hash: str | None
    raw: dict[str, int]
    """Token address (lowercase) → base units."""
    pending: dict[str, int]
    """Token address (lowercase) → the signed change of the relayed jobs not in the index yet:
    what the wallet's jobs send and pay in fees (negative), what jobs of other wallets here send
    it."""


async def indexed_balances(session: AsyncSession, context: FeedContext) -> IndexedBalances:
    """Two primary-key probes, and the few jobs in flight (docs/indexer.md, "Balances")."""
    cursor, raw = await wallet_balances(
        session, chain_id=context.chain_id, address=context.wallet.address
    )
    indexed = cursor is not None and cursor.last_block >= 0
    as_of_block = cursor.last_block if cursor is not None and indexed else None
    pending: dict[str, int] = {}

    def add(token_address: str | None, change: int) -> None:
        if token_address:
            key = token_address.lower()
            pending[key] = pending.get(key, 0) + change

    for job in await in_flight_jobs(session, context, as_of_block):
        if job.wallet_id != context.wallet.id:
            add(job.token_address, int(job.amount))
            continue
        add(job.token_address, -int(job.amount))
        add(context.token_addresses.get(job.fee_token or ""), -int(job.fee_amount))
    as_of_hash = cursor.last_block_hash if cursor is not None and indexed else None
    return IndexedBalances(
        as_of_block=as_of_block,
        as_of_hash=as_of_hash,
        raw={token.lower(): value for token, value in raw.items()},
        pending={token: change for token, change in pending.items() if change != 0},
    )
