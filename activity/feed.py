"""A wallet's activity, newest first, one keyset page at a time.

Four sources, each read in its own order by its own index and merged: indexed transfers to the
wallet, indexed transfers from it, its relayed jobs not indexed yet (and jobs on their way to
it), its failed jobs. A page reads at most ``first + 1`` rows of each source it needs (more only
while a ``kinds`` filter drops what it read), whatever the wallet's history: no OFFSET, no sort
of the whole history (docs/api.md, "Activity")."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from activity import repository
from activity.items import (
    INCOMING_KINDS,
    OUTGOING_KINDS,
    ActivityItem,
    ActivityKind,
    from_job,
    from_transfer,
    label_of,
)
from activity.repository import Position
from chain.logs import checksummed
from chain.tokens import TokenInfo
from indexer.repository import cursor_of


@dataclass(frozen=True)
class WalletRef:
    id: str
    address: str


@dataclass(frozen=True)
class FeedContext:
    """What classifying a wallet's items needs besides its rows."""

    wallet: WalletRef
    chain_id: int
    fee_treasury: str
    tokens: list[TokenInfo]
    rewards_distributor: str | None = None

    @property
    def token_addresses(self) -> dict[str, str]:
        return {t.kind.value: t.address for t in self.tokens if t.address is not None}


@dataclass(frozen=True)
class ActivityPage:
    items: list[ActivityItem]
    has_next_page: bool


Fetch = Callable[[Position | None, int], Awaitable[list[ActivityItem]]]


@dataclass
class _Source:
    """Items of one source in order, read ``batch`` at a time from after a position."""

    fetch: Fetch
    after: Position | None
    batch: int
    buffer: list[ActivityItem] = field(default_factory=list)
    exhausted: bool = False

    async def peek(self) -> ActivityItem | None:
        if not self.buffer and not self.exhausted:
            read = await self.fetch(self.after, self.batch)
            self.exhausted = len(read) < self.batch
            self.buffer = read
            if read:
                self.after = read[-1].position
        return self.buffer[0] if self.buffer else None


async def activity_page(
    session: AsyncSession,
    context: FeedContext,
    *,
    first: int,
    after: Position | None,
    kinds: frozenset[ActivityKind] | None,
    token: TokenInfo | None,
    as_of_block: int | None,
) -> ActivityPage:
    """``first`` items after ``after``, newest first, of ``kinds`` (all when ``None``) and
    ``token`` (any when ``None``), and whether more follow."""
    wanted = kinds or frozenset(ActivityKind)
    token_address = (token.address or "").lower() if token is not None else None
    sources = [
        _Source(fetch=fetch, after=after, batch=first + 1)
        for fetch in _fetchers(session, context, wanted, token, as_of_block)
    ]
    items: list[ActivityItem] = []
    while len(items) <= first:
        heads = [(item, source) for source in sources if (item := await source.peek())]
        if not heads:
            break
        item, source = max(heads, key=lambda head: head[0].position.sort_key())
        source.buffer.pop(0)
        if item.kind in wanted and token_address in (None, item.token_address.lower()):
            items.append(item)
    page = await _labelled(session, context, items[:first])
    return ActivityPage(items=page, has_next_page=len(items) > first)


def _fetchers(
    session: AsyncSession,
    context: FeedContext,
    wanted: frozenset[ActivityKind],
    token: TokenInfo | None,
    as_of_block: int | None,
) -> list[Fetch]:
    token_address = checksummed(token.address.lower()) if token and token.address else None

    def transfers(incoming: bool) -> Fetch:
        async def fetch(after: Position | None, limit: int) -> list[ActivityItem]:
            rows = await repository.transfers_page(
                session,
                address=context.wallet.address,
                incoming=incoming,
                after=after,
                token_address=token_address,
                limit=limit,
            )
            return await _transfer_items(session, context, rows)

        return fetch

    async def failed(after: Position | None, limit: int) -> list[ActivityItem]:
        rows = await repository.failed_jobs_page(
            session,
            wallet_id=context.wallet.id,
            after=after,
            token=token.kind.value if token is not None else None,
            limit=limit,
        )
        return _job_items(context, rows)

    in_flight: list[ActivityItem] | None = None

    async def pending(after: Position | None, limit: int) -> list[ActivityItem]:
        nonlocal in_flight
        if in_flight is None:  # few: read once, then served from after the position
            in_flight = await _in_flight_items(session, context, as_of_block)
        later = [i for i in in_flight if after is None or i.position.sort_key() < after.sort_key()]
        return later[:limit]

    fetchers: list[Fetch] = [pending, failed]
    if wanted & INCOMING_KINDS:
        fetchers.append(transfers(incoming=True))
    if wanted & OUTGOING_KINDS:
        fetchers.append(transfers(incoming=False))
    return fetchers


async def index_position(
    session: AsyncSession, context: FeedContext
) -> tuple[int | None, str | None]:
    """The index's block and its hash (``None``: nothing indexed yet)."""
    cursor = await cursor_of(session, context.chain_id)
    if cursor is None or cursor.last_block < 0:
        return None, None
    return cursor.last_block, cursor.last_block_hash


async def _transfer_items(
    session: AsyncSession, context: FeedContext, rows: list[Row[Any]]
) -> list[ActivityItem]:
    hashes = [row.tx_hash for row in rows]
    jobs = await repository.jobs_of_transactions(session, hashes)
    sent_by_own_jobs = [h for h in hashes if h in jobs and jobs[h].wallet_id == context.wallet.id]
    fee_logs = await repository.last_logs_from(
        session, chain_id=context.chain_id, address=context.wallet.address, hashes=sent_by_own_jobs
    )
    return [
        from_transfer(
            row,
            address=context.wallet.address,
            wallet_id=context.wallet.id,
            job=jobs.get(row.tx_hash),
            fee_log=fee_logs.get(row.tx_hash),
            fee_treasury=context.fee_treasury,
        )
        for row in rows
    ]


def _job_items(context: FeedContext, rows: list[Row[Any]]) -> list[ActivityItem]:
    made = (
        from_job(row, wallet_id=context.wallet.id, token_addresses=context.token_addresses)
        for row in rows
    )
    return [item for item in made if item is not None]


async def in_flight_jobs(
    session: AsyncSession, context: FeedContext, as_of_block: int | None
) -> list[Row[Any]]:
    """The jobs of (or to) the wallet whose tokens have not reached the index."""
    rows = await repository.jobs_in_flight(
        session,
        wallet_id=context.wallet.id,
        address=context.wallet.address,
        as_of_block=as_of_block,
    )
    indexed = await repository.jobs_already_indexed(
        session, chain_id=context.chain_id, job_ids=[row.id for row in rows]
    )
    return [row for row in rows if row.id not in indexed]


async def _in_flight_items(
    session: AsyncSession, context: FeedContext, as_of_block: int | None
) -> list[ActivityItem]:
    items = _job_items(context, await in_flight_jobs(session, context, as_of_block))
    return sorted(items, key=lambda item: item.position.sort_key(), reverse=True)


async def _labelled(
    session: AsyncSession, context: FeedContext, items: list[ActivityItem]
) -> list[ActivityItem]:
    owners = await repository.owners_of(session, [item.counterparty for item in items])
    return [
        dataclasses.replace(
            item,
            counterparty_label=label_of(
                item.counterparty,
                owners=owners,
                fee_treasury=context.fee_treasury,
                rewards_distributor=context.rewards_distributor,
            ),
        )
        for item in items
    ]
