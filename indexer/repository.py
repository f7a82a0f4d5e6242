"""The indexer's SQL: the cursor and its lease, the range's rows, rollbacks, confirmations."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import insert_if_absent, insert_many_if_absent, upsert, utc_now
from identity.models import Customer
from indexer.models import (
    IndexedBlock,
    IndexerCursor,
    TokenTransfer,
    TransferStatus,
    WalletBalance,
)
from wallet.models import Wallet

CURSORS = IndexerCursor.__table__
TRANSFERS = TokenTransfer.__table__
BLOCKS = IndexedBlock.__table__
BALANCES = WalletBalance.__table__
MOVED = (
    TRANSFERS.c.token_address,
    TRANSFERS.c.from_address,
    TRANSFERS.c.to_address,
    TRANSFERS.c.value,
    TRANSFERS.c.block_number,
    TRANSFERS.c.tx_hash,
    TRANSFERS.c.log_index,
)
"""What a transfer changes of balances (and names it, for ``activity.received``): read back
from what was inserted or deleted."""


async def take_lease(
    session: AsyncSession, *, chain_id: int, owner: str, until: datetime, start_block: int
) -> IndexerCursor | None:
    """The chain's cursor, leased to ``owner`` until ``until``; ``None`` while another holds an
    unexpired lease. The first caller creates the cursor just below ``start_block``."""
    if await _lease(session, chain_id=chain_id, owner=owner, until=until):
        return await cursor_of(session, chain_id)
    if await cursor_of(session, chain_id) is not None:
        return None
    await insert_if_absent(
        session,
        CURSORS,
        {"chain_id": chain_id, "last_block": start_block - 1, "updated_at": utc_now()},
    )
    if await _lease(session, chain_id=chain_id, owner=owner, until=until):
        return await cursor_of(session, chain_id)
    return None


async def _lease(session: AsyncSession, *, chain_id: int, owner: str, until: datetime) -> bool:
    taken = await session.execute(
        update(CURSORS)
        .where(
            CURSORS.c.chain_id == chain_id,
            or_(
                CURSORS.c.lease_owner.is_(None),
                CURSORS.c.lease_owner == owner,
                CURSORS.c.lease_until < utc_now(),
            ),
        )
        .values(lease_owner=owner, lease_until=until)
    )
    return taken.rowcount == 1


async def cursor_of(session: AsyncSession, chain_id: int) -> IndexerCursor | None:
    row = (await session.execute(select(CURSORS).where(CURSORS.c.chain_id == chain_id))).first()
    return IndexerCursor(**row._mapping) if row is not None else None


async def release_lease(session: AsyncSession, *, chain_id: int, owner: str) -> None:
    await session.execute(
        update(CURSORS)
        .where(CURSORS.c.chain_id == chain_id, CURSORS.c.lease_owner == owner)
        .values(lease_owner=None, lease_until=None)
    )


async def move_cursor(
    session: AsyncSession,
    *,
    chain_id: int,
    owner: str,
    expected_block: int,
    block: int,
    block_hash: str | None,
    lease_until: datetime,
) -> bool:
    """Compare-and-set: the cursor moves from ``expected_block`` to ``block`` only while
    ``owner`` holds the lease and nobody moved it since it was read. The first statement of a
    range's transaction, so it also takes the row's lock: writers of a chain go one at a time.
    Returns whether it moved (if not, the caller rolls back)."""
    moved = await session.execute(
        update(CURSORS)
        .where(
            CURSORS.c.chain_id == chain_id,
            CURSORS.c.lease_owner == owner,
            CURSORS.c.last_block == expected_block,
        )
        .values(
            last_block=block,
            last_block_hash=block_hash,
            lease_until=lease_until,
            updated_at=utc_now(),
        )
    )
    return moved.rowcount == 1


async def insert_transfers(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> list[Row[Any]]:
    """New rows; one already there (same chain, transaction and log index) is left as it is.
    Returns what was inserted (``MOVED``), so that only those change balances."""
    return await insert_many_if_absent(session, TRANSFERS, rows, returning=MOVED)


async def store_blocks(session: AsyncSession, blocks: Sequence[dict[str, Any]]) -> None:
    """Remember these blocks' hashes (replacing what a number held before a reorganisation)."""
    if blocks:
        await upsert(session, BLOCKS, blocks, update=("hash", "parent_hash"))


async def forget_blocks_below(session: AsyncSession, *, chain_id: int, number: int) -> None:
    await session.execute(
        delete(BLOCKS).where(BLOCKS.c.chain_id == chain_id, BLOCKS.c.number < number)
    )


async def recent_blocks(
    session: AsyncSession, *, chain_id: int, up_to: int, limit: int
) -> list[tuple[int, str]]:
    """(number, hash) of the remembered blocks at or below ``up_to``, highest first."""
    rows = await session.execute(
        select(BLOCKS.c.number, BLOCKS.c.hash)
        .where(BLOCKS.c.chain_id == chain_id, BLOCKS.c.number <= up_to)
        .order_by(BLOCKS.c.number.desc())
        .limit(limit)
    )
    return [(int(number), str(block_hash)) for number, block_hash in rows.all()]


async def forget_above(session: AsyncSession, *, chain_id: int, number: int) -> list[Row[Any]]:
    """Delete what was indexed above block ``number`` (a reorganisation dropped it). Returns the
    transfers that went (``MOVED``), to take them off balances."""
    removed = await session.execute(
        delete(TRANSFERS)
        .where(TRANSFERS.c.chain_id == chain_id, TRANSFERS.c.block_number > number)
        .returning(*MOVED)
    )
    gone = list(removed.all())
    await session.execute(
        delete(BLOCKS).where(BLOCKS.c.chain_id == chain_id, BLOCKS.c.number > number)
    )
    return gone


async def balances_of(
    session: AsyncSession, *, chain_id: int, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """(address, token address) → the indexed balance, for those of ``keys`` that have one."""
    found: dict[tuple[str, str], int] = {}
    addresses = sorted({address for address, _ in keys})
    for start in range(0, len(addresses), 500):
        rows = await session.execute(
            select(BALANCES.c.address, BALANCES.c.token_address, BALANCES.c.balance).where(
                BALANCES.c.chain_id == chain_id,
                BALANCES.c.address.in_(addresses[start : start + 500]),
            )
        )
        found.update({(address, token): int(balance) for address, token, balance in rows.all()})
    return found


async def store_balances(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Set these balances (the caller moved the cursor first: it holds the chain's lock)."""
    if rows:
        await upsert(session, BALANCES, rows, update=("balance", "last_block"))


async def wallet_balances(
    session: AsyncSession, *, chain_id: int, address: str
) -> tuple[IndexerCursor | None, dict[str, int]]:
    """The chain's cursor (the block the balances are as of; ``None``: nothing indexed yet) and
    ``address``'s balance per token address: two primary-key probes."""
    rows = await session.execute(
        select(BALANCES.c.token_address, BALANCES.c.balance).where(
            BALANCES.c.chain_id == chain_id, BALANCES.c.address == address
        )
    )
    balances = {token: int(balance) for token, balance in rows.all()}
    return await cursor_of(session, chain_id), balances


async def confirm_up_to(session: AsyncSession, *, chain_id: int, number: int) -> int:
    """PENDING transfers in blocks up to ``number`` become CONFIRMED. Returns how many."""
    confirmed = await session.execute(
        update(TRANSFERS)
        .where(
            TRANSFERS.c.status == TransferStatus.PENDING,
            TRANSFERS.c.block_number <= number,
            TRANSFERS.c.chain_id == chain_id,
        )
        .values(status=TransferStatus.CONFIRMED)
    )
    return int(confirmed.rowcount or 0)


async def tenants_of_wallets(session: AsyncSession, addresses: set[str]) -> dict[str, str]:
    """Wallet address → its customer's tenant, for the custodial wallets among ``addresses``."""
    if not addresses:
        return {}
    statement = (
        select(Wallet.address, Customer.tenant_id)
        .join(Customer, Customer.id == Wallet.customer_id)
        .where(Wallet.address.in_(sorted(addresses)))
    )
    return {address: tenant_id for address, tenant_id in (await session.execute(statement)).all()}
