"""The activity feed's SQL: keyset pages of a wallet's indexed transfers (each side by its own
index), its relayed jobs still in flight or failed, the jobs behind transactions, and who the
counterparties are. Every statement is an index probe or an index range bounded by the page."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, literal, or_, select, true, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from identity.models import Customer, Tenant
from indexer.models import TokenTransfer
from relayer.models import JobKind, RelayAttempt, RelayStatus, RelayTransaction
from wallet.models import Wallet

TRANSFERS = TokenTransfer.__table__
JOBS = RelayTransaction.__table__
ATTEMPTS = RelayAttempt.__table__
CHAIN_RANK = 0
JOB_RANK = 1
"""At one moment, in-flight and failed jobs sort above (newer than) indexed transfers."""
MOVING_KINDS = (
    JobKind.TRANSFER,
    JobKind.ENROLL,
    JobKind.ONRAMP_DELIVERY,
    JobKind.SPONSOR_FUNDING,
)
"""Jobs that move a wallet's tokens (the others move none: registry changes, nonce fills)."""
INCOMING_KINDS = (JobKind.TRANSFER, JobKind.ONRAMP_DELIVERY)
"""Jobs whose ``to_address`` receives their tokens (an enrollment's is the registry)."""
ENDED_UNSENT = (RelayStatus.FAILED, RelayStatus.REPLACED)
"""Jobs whose tokens never move."""


@dataclass(frozen=True)
class Position:
    """Where an item sorts, newest first: its time, then ``rank``, then its key (a transfer's
    row id, a job's id)."""

    at: datetime
    rank: int
    key: str

    def sort_key(self) -> tuple[datetime, int, int | str]:
        return (self.at, self.rank, int(self.key) if self.rank == CHAIN_RANK else self.key)


async def transfers_page(
    session: AsyncSession,
    *,
    address: str,
    incoming: bool,
    after: Position | None,
    token_address: str | None,
    limit: int,
) -> list[Row[Any]]:
    """The next ``limit`` indexed transfers to (``incoming``) or from ``address``, newest first
    (``ix_token_transfers_to_time`` / ``_from_time``); a transfer to itself counts as incoming."""
    side = TRANSFERS.c.to_address if incoming else TRANSFERS.c.from_address
    statement = select(TRANSFERS).where(side == address)
    if not incoming:
        statement = statement.where(TRANSFERS.c.to_address != address)
    if token_address is not None:
        statement = statement.where(TRANSFERS.c.token_address == token_address)
    if after is not None:
        at = TRANSFERS.c.block_timestamp
        if after.rank == JOB_RANK:
            statement = statement.where(at <= after.at)
        else:
            # One row comparison, not an OR: PostgreSQL then starts the index scan
            # (address, block_timestamp, id) at the cursor and stops after ``limit`` rows.
            key = tuple_(at, TRANSFERS.c.id)
            statement = statement.where(
                key
                < tuple_(literal(after.at, at.type), literal(int(after.key), TRANSFERS.c.id.type))
            )
    statement = statement.order_by(TRANSFERS.c.block_timestamp.desc(), TRANSFERS.c.id.desc())
    return list((await session.execute(statement.limit(limit))).all())


def _job_keyset(after: Position | None) -> Any:
    if after is None:
        return true()
    if after.rank == CHAIN_RANK:
        return JOBS.c.created_at < after.at
    return or_(
        JOBS.c.created_at < after.at, and_(JOBS.c.created_at == after.at, JOBS.c.id < after.key)
    )


async def failed_jobs_page(
    session: AsyncSession,
    *,
    wallet_id: str,
    after: Position | None,
    token: str | None,
    limit: int,
) -> list[Row[Any]]:
    """The wallet's next ``limit`` failed jobs that would have moved tokens, newest first."""
    statement = select(JOBS).where(
        JOBS.c.wallet_id == wallet_id,
        JOBS.c.status == RelayStatus.FAILED,
        JOBS.c.kind.in_(MOVING_KINDS),
        _job_keyset(after),
    )
    if token is not None:
        statement = statement.where(JOBS.c.token == token)
    statement = statement.order_by(JOBS.c.created_at.desc(), JOBS.c.id.desc()).limit(limit)
    return list((await session.execute(statement)).all())


async def jobs_in_flight(
    session: AsyncSession, *, wallet_id: str, address: str, as_of_block: int | None
) -> list[Row[Any]]:
    """The wallet's jobs and the jobs to its address whose tokens have not reached the index
    yet: not mined, or mined above the index's block. Few at any time, found by index ranges
    (``ix_relay_tx_wallet_block``, ``ix_relay_tx_to_block``: a job's block is null until it is
    mined); each row also has its sender's address (``sender``)."""
    later = JOBS.c.block_number > as_of_block if as_of_block is not None else true()
    not_indexed = and_(
        or_(JOBS.c.block_number.is_(None), later), JOBS.c.status.not_in(ENDED_UNSENT)
    )
    columns = (*JOBS.c, Wallet.address.label("sender"))
    own = (
        select(*columns)
        .join(Wallet, Wallet.id == JOBS.c.wallet_id)
        .where(JOBS.c.wallet_id == wallet_id, JOBS.c.kind.in_(MOVING_KINDS), not_indexed)
    )
    incoming = (
        select(*columns)
        .join(Wallet, Wallet.id == JOBS.c.wallet_id)
        .where(JOBS.c.to_address == address, JOBS.c.kind.in_(INCOMING_KINDS), not_indexed)
        .where(JOBS.c.wallet_id != wallet_id)
    )
    return [*(await session.execute(own)).all(), *(await session.execute(incoming)).all()]


async def jobs_already_indexed(
    session: AsyncSession, *, chain_id: int, job_ids: Sequence[str]
) -> set[str]:
    """Which of these jobs have a transaction (any attempt's) in the index already: the
    indexer may see a block before the relayer's tracker marks the job mined."""
    if not job_ids:
        return set()
    statement = (
        select(ATTEMPTS.c.relay_transaction_id)
        .join(
            TRANSFERS,
            and_(TRANSFERS.c.chain_id == chain_id, TRANSFERS.c.tx_hash == ATTEMPTS.c.tx_hash),
        )
        .where(ATTEMPTS.c.relay_transaction_id.in_(list(job_ids)))
    )
    return set((await session.execute(statement)).scalars())


async def jobs_of_transactions(session: AsyncSession, hashes: Sequence[str]) -> dict[str, Row[Any]]:
    """Transaction hash → the job that sent it (by any of its attempts)."""
    if not hashes:
        return {}
    statement = (
        select(ATTEMPTS.c.tx_hash.label("attempt_hash"), *JOBS.c)
        .join(JOBS, JOBS.c.id == ATTEMPTS.c.relay_transaction_id)
        .where(ATTEMPTS.c.tx_hash.in_(sorted(set(hashes))))
    )
    return {row.attempt_hash: row for row in (await session.execute(statement)).all()}


async def last_logs_from(
    session: AsyncSession, *, chain_id: int, address: str, hashes: Sequence[str]
) -> dict[str, int]:
    """Transaction hash → the index of its last indexed log sent by ``address``: a relayed
    job's gas fee is its last call, so its fee transfer is that log."""
    if not hashes:
        return {}
    statement = select(TRANSFERS.c.tx_hash, TRANSFERS.c.log_index).where(
        TRANSFERS.c.chain_id == chain_id,
        TRANSFERS.c.tx_hash.in_(sorted(set(hashes))),
        TRANSFERS.c.from_address == address,
    )
    last: dict[str, int] = {}
    for tx_hash, log_index in (await session.execute(statement)).all():
        last[tx_hash] = max(last.get(tx_hash, -1), int(log_index))
    return last


@dataclass(frozen=True)
class Owner:
    """Who holds a wallet here: its kind, its name in the code (system wallets), its utility."""

    kind: str
    subject: str
    tenant_name: str
    tenant_issuer: str


async def owners_of(session: AsyncSession, addresses: Sequence[str]) -> dict[str, Owner]:
    """Address → its owner, for those of ``addresses`` that are wallets here."""
    if not addresses:
        return {}
    statement = (
        select(Wallet.address, Customer.kind, Customer.subject, Tenant.name, Tenant.issuer)
        .join(Customer, Customer.id == Wallet.customer_id)
        .join(Tenant, Tenant.id == Customer.tenant_id)
        .where(Wallet.address.in_(sorted(set(addresses))))
    )
    rows = (await session.execute(statement)).all()
    return {address: Owner(*rest) for address, *rest in rows}
