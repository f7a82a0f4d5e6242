"""Indexed balances: every watched address's balance of each served token, kept by the indexer
in the transaction that inserts (or, after a reorganisation, deletes) the transfers that make
it, so a balance read is one primary-key probe whatever the wallet's history (docs/indexer.md,
"Balances").

Read, changed in Python and written back, not added in SQL: SQLite has no exact arithmetic
beyond 64 bits (its amounts are decimal text), and the indexer writing a chain holds the
cursor's lock (``move_cursor`` is the transaction's first statement), so nobody else writes
these rows meanwhile."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from indexer import repository


def balance_changes(
    moved: Iterable[Row[Any]], *, watched: set[str], sign: int
) -> dict[tuple[str, str], tuple[int, int]]:
    """(address, token address) → (change, highest block) of the watched addresses, for the
    transfers ``moved`` (``sign`` 1: inserted, -1: deleted)."""
    changes: dict[tuple[str, str], tuple[int, int]] = {}
    for transfer in moved:
        value, block = int(transfer.value), int(transfer.block_number)
        for address, direction in ((transfer.to_address, 1), (transfer.from_address, -1)):
            if address in watched:
                key = (address, transfer.token_address)
                change, last = changes.get(key, (0, block))
                changes[key] = (change + sign * direction * value, max(last, block))
    return changes


async def apply_transfers(
    session: AsyncSession,
    *,
    chain_id: int,
    moved: Sequence[Row[Any]],
    watched: set[str],
    sign: int,
    rolled_back_to: int | None = None,
) -> None:
    """Add (``sign`` 1) or take off (-1) ``moved`` to the watched addresses' balances; a
    rollback (``rolled_back_to``, the fork point) marks them as of that block."""
    changes = balance_changes(moved, watched=watched, sign=sign)
    if not changes:
        return
    current = await repository.balances_of(session, chain_id=chain_id, keys=list(changes))
    await repository.store_balances(
        session,
        [
            {
                "chain_id": chain_id,
                "address": address,
                "token_address": token,
                "balance": current.get((address, token), 0) + change,
                "last_block": block if rolled_back_to is None else rolled_back_to,
            }
            for (address, token), (change, block) in sorted(changes.items())
        ],
    )
