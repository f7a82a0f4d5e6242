"""The relayer's SQL: reads of relayed transactions for the API, and the worker's statements."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Row,
    and_,
    bindparam,
    exists,
    insert,
    or_,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import new_id
from core.idempotency import NONCE_FILL_KEY_PREFIX
from relayer.models import (
    OPEN_STATUSES,
    PIPELINE_STATUSES,
    JobKind,
    MovedHold,
    RelayAttempt,
    RelayerKey,
    RelayStatus,
    RelayTransaction,
    SponsorCharge,
)
from wallet.models import Wallet

JOBS = RelayTransaction.__table__
# A job's open reservation, if it has one: a sponsored job's unsettled charge (one at most: a
# charge is unique per job). Joined to the jobs a signing round reads, so that capping their
# fees adds no statement to the round.
OPEN_RESERVATION = and_(
    SponsorCharge.relay_transaction_id == RelayTransaction.id,
    SponsorCharge.settled.is_(False),
)
# A job as its receipt was read: still SUBMITTED at the relayer nonce it was read with. Both
# outcomes of a receipt (landed, or queued again) update through this guard, so a second
# writer, or a receipt read before another worker queued the job again, changes nothing.
STILL_AS_READ = update(JOBS).where(
    JOBS.c.id == bindparam("b_id"),
    JOBS.c.status == RelayStatus.SUBMITTED,
    JOBS.c.relayer_nonce == bindparam("b_relayer_nonce"),
)
_ENDED = (RelayStatus.MINED, RelayStatus.CONFIRMED, RelayStatus.FAILED)

# -- reads for the API -------------------------------------------------------------------------


async def transaction_of_wallet(
    session: AsyncSession, *, wallet_id: str, transaction_id: str
) -> RelayTransaction | None:
    statement = select(RelayTransaction).where(
        RelayTransaction.id == transaction_id, RelayTransaction.wallet_id == wallet_id
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def transactions_page(
    session: AsyncSession, *, wallet_id: str, first: int, after: tuple[datetime, str] | None
) -> list[RelayTransaction]:
    """Newest first; ``first + 1`` rows so the caller knows whether another page exists."""
    statement = select(RelayTransaction).where(
        RelayTransaction.wallet_id == wallet_id, RelayTransaction.kind != JobKind.NONCE_FILL
    )
    if after is not None:
        created, row_id = after
        statement = statement.where(
            or_(
                RelayTransaction.created_at < created,
                and_(RelayTransaction.created_at == created, RelayTransaction.id < row_id),
            )
        )
    statement = statement.order_by(
        RelayTransaction.created_at.desc(), RelayTransaction.id.desc()
    ).limit(first + 1)
    return list((await session.execute(statement)).scalars())


# -- what a new transfer must know of its wallet's jobs ------------------------------------------


def _running_total(*, before_window: bool) -> Any:
    """The wallet's running total of the token as of its newest job (or its newest job created
    before the window): one index probe (``ix_relay_tx_wallet_token_created``)."""
    statement = select(JOBS.c.running_total).where(
        JOBS.c.wallet_id == bindparam("wallet_id"), JOBS.c.token == bindparam("token")
    )
    if before_window:
        statement = statement.where(JOBS.c.created_at < bindparam("since"))
    return statement.order_by(JOBS.c.created_at.desc()).limit(1).scalar_subquery()


def _same_key(column: Any) -> Any:
    key = JOBS.c.idempotency_key == bindparam("idempotency_key")
    return select(column).where(JOBS.c.wallet_id == bindparam("wallet_id"), key).scalar_subquery()


_SUMMARY = select(
    _same_key(JOBS.c.id).label("existing_id"),
    _same_key(JOBS.c.request_fingerprint).label("existing_fingerprint"),
    exists().where(JOBS.c.quote_id == bindparam("quote_id")).label("quote_used"),
    _running_total(before_window=False).label("total_now"),
    _running_total(before_window=True).label("total_before"),
).subquery("summary")
_JOB_DEBITS = (JOBS.c.token, JOBS.c.amount, JOBS.c.fee_token, JOBS.c.fee_amount, JOBS.c.status)
_OPEN_AND_RECENTLY_FAILED = union_all(
    select(*_JOB_DEBITS).where(
        JOBS.c.wallet_id == bindparam("wallet_id"), JOBS.c.status.in_(OPEN_STATUSES)
    ),
    select(*_JOB_DEBITS).where(
        JOBS.c.wallet_id == bindparam("wallet_id"),
        JOBS.c.status == RelayStatus.FAILED,
        JOBS.c.created_at >= bindparam("since"),
        JOBS.c.token == bindparam("token"),
    ),
).subquery("jobs")
# One statement, one row per job it needs (at least one): the summary above (the job this
# idempotency key made, whether the quote was used, two running totals) beside the wallet's
# open jobs (their amounts are not on chain yet) and its failed jobs of the token since the
# window began. Every part is an index probe or range (``ix_relay_tx_wallet_status_token``
# for the jobs): nothing it reads grows with the wallet's history.
_TRANSFER_CONTEXT = select(_SUMMARY, _OPEN_AND_RECENTLY_FAILED).select_from(
    _SUMMARY.outerjoin(_OPEN_AND_RECENTLY_FAILED, true())
)


@dataclass(frozen=True)
class TransferContext:
    """What a new transfer of ``token`` must know of its wallet's jobs."""

    existing_id: str | None  # the job its idempotency key made
    existing_fingerprint: str | None
    quote_used: bool
    total_now: int  # the wallet's running total of the token
    sent_since: int  # of the token, by jobs created since the window began and not failed
    open_jobs: list[Row[Any]]  # (token, amount, fee_token, fee_amount) of each open job


async def transfer_context(
    session: AsyncSession,
    *,
    wallet_id: str,
    token: str,
    idempotency_key: str,
    quote_id: str,
    since: datetime,
) -> TransferContext:
    """The wallet's jobs as a new transfer sees them, in one statement (``_TRANSFER_CONTEXT``).
    The caller holds the wallet's lock, so the running totals are current."""
    keys = {"wallet_id": wallet_id, "token": token, "idempotency_key": idempotency_key}
    rows = (
        await session.execute(_TRANSFER_CONTEXT, {**keys, "quote_id": quote_id, "since": since})
    ).all()
    first = rows[0]
    total_now, total_before = int(first.total_now or 0), int(first.total_before or 0)
    failed = sum(int(row.amount) for row in rows if row.status == RelayStatus.FAILED)
    return TransferContext(
        existing_id=first.existing_id,
        existing_fingerprint=first.existing_fingerprint,
        quote_used=bool(first.quote_used),
        total_now=total_now,
        sent_since=total_now - total_before - failed,
        open_jobs=[row for row in rows if row.status in OPEN_STATUSES],
    )


async def running_total(session: AsyncSession, *, wallet_id: str, token: str) -> int:
    """The wallet's running total of ``token`` (the caller holds the wallet's lock)."""
    statement = select(_running_total(before_window=False))
    parameters = {"wallet_id": wallet_id, "token": token}
    return int((await session.execute(statement, parameters)).scalar() or 0)


# -- keys and scheduling -----------------------------------------------------------------------


async def stages_by_key(session: AsyncSession) -> list[Row[Any]]:
    """(relayer key id, status) of every open stage that has jobs: one grouped count."""
    statement = (
        select(RelayTransaction.relayer_key_id, RelayTransaction.status)
        .where(RelayTransaction.status.in_(PIPELINE_STATUSES))
        .group_by(RelayTransaction.relayer_key_id, RelayTransaction.status)
    )
    return list((await session.execute(statement)).all())


async def claim_key(session: AsyncSession, key_id: str, *, is_postgres: bool) -> RelayerKey | None:
    """The key's row, locked against other workers (``None``: another worker has it), with
    ``FOR NO KEY UPDATE SKIP LOCKED`` (docs/relayer.md, "Locks")."""
    statement = select(RelayerKey).where(RelayerKey.id == key_id)
    if is_postgres:
        statement = statement.with_for_update(skip_locked=True, key_share=True)
    return (await session.execute(statement)).scalar_one_or_none()


# -- jobs by stage -----------------------------------------------------------------------------


async def queued_to_sign(
    session: AsyncSession,
    key_id: str,
    *,
    skip_wallets: Iterable[str],
    is_postgres: bool,
    limit: int,
) -> list[Row[Any]]:
    """The key's queued jobs with their open reservation's amount (or ``None``), oldest first;
    on PostgreSQL their rows (not their charges) locked, skipping jobs another worker holds."""
    statement = (
        select(RelayTransaction, SponsorCharge.amount_wei)
        .outerjoin(SponsorCharge, OPEN_RESERVATION)
        .where(
            RelayTransaction.relayer_key_id == key_id,
            RelayTransaction.status == RelayStatus.QUEUED,
        )
    )
    skipped = sorted(skip_wallets)
    if skipped:
        statement = statement.where(RelayTransaction.wallet_id.not_in(skipped))
    if is_postgres:
        statement = statement.with_for_update(of=RelayTransaction, skip_locked=True)
    statement = statement.order_by(
        RelayTransaction.created_at, RelayTransaction.forwarder_nonce
    ).limit(limit)
    return list((await session.execute(statement)).all())


async def insert_attempts(session: AsyncSession, attempts: list[dict[str, object]]) -> None:
    """One executemany (a RelayAttempt object each cost more than signing the job)."""
    await session.execute(insert(RelayAttempt.__table__), attempts)


def attempt_row(job: RelayTransaction, *, at: datetime) -> dict[str, object]:
    """The ``relay_attempts`` row of the raw transaction just stored on ``job``. Its relayer
    nonce matters: only attempts at the job's current nonce are its possible outcomes."""
    assert job.relayer_nonce is not None and job.raw_transaction is not None
    return {
        "id": new_id(),
        "relay_transaction_id": job.id,
        "relayer_nonce": job.relayer_nonce,
        "tx_hash": job.tx_hash,
        "raw_transaction": job.raw_transaction,
        "max_fee_per_gas": job.max_fee_per_gas,
        "max_priority_fee_per_gas": job.max_priority_fee_per_gas,
        "created_at": at,
    }


async def signed_to_send(session: AsyncSession, key_id: str) -> list[Row[Any]]:
    """(id, raw transaction, submitted_at) of the key's SIGNED jobs in relayer-nonce order."""
    statement = (
        select(RelayTransaction.id, RelayTransaction.raw_transaction, RelayTransaction.submitted_at)
        .where(
            RelayTransaction.relayer_key_id == key_id,
            RelayTransaction.status == RelayStatus.SIGNED,
        )
        .order_by(RelayTransaction.relayer_nonce)
    )
    return list((await session.execute(statement)).all())


async def mark_submitted(session: AsyncSession, job_ids: list[str], *, now: datetime) -> None:
    """SIGNED jobs the node accepted become SUBMITTED. Two workers may broadcast the same
    stored bytes and mark the same rows: rows are locked in one order, skipping those the
    other worker holds (it marks them itself); one UPDATE over both sets could deadlock."""
    mine = list(
        (
            await session.execute(
                select(RelayTransaction.id)
                .where(
                    RelayTransaction.id.in_(job_ids),
                    RelayTransaction.status == RelayStatus.SIGNED,
                )
                .order_by(RelayTransaction.id)
                .with_for_update(skip_locked=True)
            )
        ).scalars()
    )
    if mine:
        await session.execute(
            update(RelayTransaction)
            .where(RelayTransaction.id.in_(mine))
            .values(status=RelayStatus.SUBMITTED, submitted_at=now, updated_at=now)
        )


async def mark_to_follow(session: AsyncSession, job_ids: list[str], *, now: datetime) -> None:
    """SIGNED jobs whose receipts must be looked up ("nonce too low") become SUBMITTED."""
    await session.execute(
        update(RelayTransaction)
        .where(RelayTransaction.id.in_(job_ids), RelayTransaction.status == RelayStatus.SIGNED)
        .values(status=RelayStatus.SUBMITTED, submitted_at=now, updated_at=now)
    )


async def lock_job(
    session: AsyncSession, job_id: str, *still: ColumnElement[bool]
) -> RelayTransaction | None:
    """The job, its row locked for the rest of the transaction, if it is ``still`` as the
    caller read it (conditions on ``JOBS``): another worker may have moved it since."""
    return (
        await session.execute(
            select(RelayTransaction).where(JOBS.c.id == job_id, *still).with_for_update()
        )
    ).scalar_one_or_none()


async def fail_job(session: AsyncSession, job_id: str, *, error: str, now: datetime) -> None:
    """The job FAILED, its relayer nonce released (a filler takes it)."""
    await session.execute(
        update(RelayTransaction)
        .where(RelayTransaction.id == job_id)
        .values(status=RelayStatus.FAILED, error=error[:500], relayer_nonce=None, updated_at=now)
    )


async def open_jobs_to_track(session: AsyncSession, key_id: str) -> list[Row[Any]]:
    """The columns ``track_submitted`` needs of the key's SUBMITTED and MINED jobs."""
    statement = select(
        RelayTransaction.id,
        RelayTransaction.status,
        RelayTransaction.kind,
        RelayTransaction.tx_hash,
        RelayTransaction.relayer_nonce,
        RelayTransaction.forwarder_nonce,
        RelayTransaction.attempts,
        RelayTransaction.submitted_at,
        RelayTransaction.block_number,
        RelayTransaction.sponsor_id,
        RelayTransaction.wallet_id,
    ).where(
        RelayTransaction.relayer_key_id == key_id,
        RelayTransaction.status.in_((RelayStatus.SUBMITTED, RelayStatus.MINED)),
    )
    return list((await session.execute(statement)).all())


async def attempts_of(session: AsyncSession, job_ids: list[str]) -> list[Row[Any]]:
    """(job id, tx hash, relayer nonce) of every attempt of these jobs."""
    statement = select(
        RelayAttempt.relay_transaction_id, RelayAttempt.tx_hash, RelayAttempt.relayer_nonce
    ).where(RelayAttempt.relay_transaction_id.in_(job_ids))
    return list((await session.execute(statement)).all())


async def record_landed(
    session: AsyncSession, landed: list[dict[str, object]], *, now: datetime
) -> None:
    """Receipts' outcomes (one executemany, guarded by ``STILL_AS_READ``)."""
    await session.execute(
        STILL_AS_READ.values(
            status=bindparam("b_status"),
            error=bindparam("b_error"),
            block_number=bindparam("b_block_number"),
            gas_used=bindparam("b_gas_used"),
            effective_gas_price=bindparam("b_effective_gas_price"),
            tx_hash=bindparam("b_tx_hash"),
            confirmed_at=bindparam("b_confirmed_at"),
            updated_at=now,
        ),
        landed,
    )


async def requeue(
    session: AsyncSession, requeued: list[dict[str, object]], *, now: datetime
) -> None:
    """Jobs back to the state the API created them in (guarded by ``STILL_AS_READ``); their
    attempts stay as the record of what was sent. Their relayer nonces were used by the
    reverted transactions, so the key's nonces have no gap."""
    await session.execute(
        STILL_AS_READ.values(
            status=RelayStatus.QUEUED,
            relayer_nonce=None,
            raw_transaction=None,
            tx_hash=None,
            max_fee_per_gas=None,
            max_priority_fee_per_gas=None,
            attempts=0,
            block_number=None,
            gas_used=None,
            effective_gas_price=None,
            error=None,
            submitted_at=None,
            confirmed_at=None,
            updated_at=now,
        ),
        requeued,
    )


async def confirm(session: AsyncSession, job_ids: list[str], *, now: datetime) -> None:
    await session.execute(
        update(JOBS)
        .where(JOBS.c.id.in_(job_ids), JOBS.c.status == RelayStatus.MINED)
        .values(status=RelayStatus.CONFIRMED, confirmed_at=now, updated_at=now)
    )


async def tx_hash_of_ended(session: AsyncSession, job_ids: Sequence[str]) -> dict[str, str]:
    """Job id → tx hash of those of these jobs that have ended (MINED, CONFIRMED, FAILED)."""
    statement = select(JOBS.c.id, JOBS.c.tx_hash).where(
        JOBS.c.id.in_(job_ids), JOBS.c.status.in_(_ENDED)
    )
    return {job_id: tx_hash for job_id, tx_hash in (await session.execute(statement)).all()}


# -- wallets -----------------------------------------------------------------------------------


async def wallet_addresses(session: AsyncSession, wallet_ids: Iterable[str]) -> dict[str, str]:
    statement = select(Wallet.id, Wallet.address).where(Wallet.id.in_(sorted(set(wallet_ids))))
    return {wallet_id: address for wallet_id, address in (await session.execute(statement)).all()}


async def moved_holds_of(session: AsyncSession, wallet_id: str, *, now: datetime) -> list[Row[Any]]:
    """The holds moved into or out of the wallet that have not ended (``MovedHold``: from,
    to, token, amount, until), except those of a FAILED job (its tokens never moved)."""
    statement = (
        select(
            MovedHold.from_wallet_id,
            MovedHold.to_wallet_id,
            MovedHold.token,
            MovedHold.amount,
            MovedHold.until,
        )
        .join(RelayTransaction, RelayTransaction.id == MovedHold.relay_transaction_id)
        .where(
            or_(MovedHold.to_wallet_id == wallet_id, MovedHold.from_wallet_id == wallet_id),
            MovedHold.until > now,
            RelayTransaction.status != RelayStatus.FAILED,
        )
    )
    return list((await session.execute(statement)).all())


async def lock_wallet(session: AsyncSession, wallet_id: str) -> None:
    """The wallet's lock, as the API takes it (a no-op UPDATE of its row)."""
    await session.execute(
        update(Wallet)
        .where(Wallet.id == wallet_id)
        .values(next_forwarder_nonce=Wallet.next_forwarder_nonce)
    )


async def wallet_has_job_in_flight(session: AsyncSession, wallet_id: str) -> bool:
    """Whether one of the wallet's jobs (not a filler) is SIGNED or SUBMITTED."""
    statement = select(RelayTransaction.id).where(
        RelayTransaction.wallet_id == wallet_id,
        RelayTransaction.kind != JobKind.NONCE_FILL,
        RelayTransaction.status.in_((RelayStatus.SIGNED, RelayStatus.SUBMITTED)),
    )
    return (await session.execute(statement)).first() is not None


async def wallet_holds_nonces_from(
    session: AsyncSession, wallet_id: str, *, chain_nonce: int
) -> bool:
    """Whether a job of the wallet (not a filler) may use forwarder nonces the forwarder's
    ``chain_nonce`` does not show used: one not final yet, or one confirmed at or above it
    (then ``chain_nonce`` was read before it landed)."""
    statement = select(RelayTransaction.id).where(
        RelayTransaction.wallet_id == wallet_id,
        RelayTransaction.kind != JobKind.NONCE_FILL,
        or_(
            RelayTransaction.status.in_(
                (
                    RelayStatus.QUEUED,
                    RelayStatus.SIGNED,
                    RelayStatus.SUBMITTED,
                    RelayStatus.MINED,
                )
            ),
            and_(
                RelayTransaction.status == RelayStatus.CONFIRMED,
                RelayTransaction.forwarder_nonce >= chain_nonce,
            ),
        ),
    )
    return (await session.execute(statement.limit(1))).first() is not None


async def queued_of_wallet(
    session: AsyncSession, wallet_id: str, *, for_update: bool
) -> list[RelayTransaction]:
    """The wallet's QUEUED jobs in forwarder-nonce order; ``for_update`` locks them."""
    statement = (
        select(RelayTransaction)
        .where(
            RelayTransaction.wallet_id == wallet_id, RelayTransaction.status == RelayStatus.QUEUED
        )
        .order_by(RelayTransaction.forwarder_nonce, RelayTransaction.created_at)
    )
    if for_update:
        statement = statement.with_for_update()
    return list((await session.execute(statement)).scalars())


async def nonce_filler_status(session: AsyncSession, job: RelayTransaction) -> str | None:
    """The status of the zero-value transaction that took a refused job's relayer nonce: the
    worker's filler on the job's wallet, never a row of another kind that holds its key."""
    statement = select(RelayTransaction.status).where(
        RelayTransaction.wallet_id == job.wallet_id,
        RelayTransaction.kind == JobKind.NONCE_FILL,
        RelayTransaction.idempotency_key == f"{NONCE_FILL_KEY_PREFIX}{job.id}",
    )
    return (await session.execute(statement)).scalar_one_or_none()
