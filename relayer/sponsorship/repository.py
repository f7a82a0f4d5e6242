"""The sponsorship's SQL: sponsors (read, locked in order), their charges and customers' days,
and fundings (pending until their job is confirmed, credited once)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from relayer.models import (
    FundingStatus,
    RelayStatus,
    RelayTransaction,
    Sponsor,
    SponsorCharge,
    SponsorCustomerDay,
    SponsorFunding,
)
from relayer.sponsorship.rules import CustomerDay, today


async def sponsor_of_tenant(session: AsyncSession, tenant_id: str) -> Sponsor | None:
    statement = select(Sponsor).where(Sponsor.tenant_id == tenant_id)
    return (await session.execute(statement)).scalar_one_or_none()


async def spent_wei(session: AsyncSession, sponsor_id: str) -> int:
    sponsor = await session.get(Sponsor, sponsor_id)
    return sponsor.spent_wei if sponsor is not None else 0


async def customer_day_spent(
    session: AsyncSession, sponsor_id: str, customer_id: str, day: str
) -> int:
    # Read from the database even when the row is in the session: callers hold the sponsor's
    # lock and must see what the last holder committed.
    row = await session.get(
        SponsorCustomerDay, (sponsor_id, customer_id, day), populate_existing=True
    )
    return row.spent_wei if row is not None else 0


def _with_customer_day_statement(*, by_id: bool) -> Any:
    day = SponsorCustomerDay
    return (
        select(Sponsor, day.spent_wei)
        .outerjoin(
            day,
            and_(
                day.sponsor_id == Sponsor.id,
                day.customer_id == bindparam("customer_id"),
                day.day == bindparam("day"),
            ),
        )
        .where(
            Sponsor.id == bindparam("sponsor")
            if by_id
            else Sponsor.tenant_id == bindparam("sponsor")
        )
    )


# Built once: building a statement costs more CPU than running it (docs/benchmarks.md).
_WITH_CUSTOMER_DAY = {by_id: _with_customer_day_statement(by_id=by_id) for by_id in (False, True)}
_LOCK_BY_ID = (
    select(Sponsor)
    .where(Sponsor.id == bindparam("sponsor"))
    .with_for_update(key_share=True)
    .execution_options(populate_existing=True)
)
_LOCK_BY_TENANT = (
    select(Sponsor)
    .where(Sponsor.tenant_id == bindparam("sponsor"))
    .with_for_update(key_share=True)
    .execution_options(populate_existing=True)
)


async def with_customer_day(
    session: AsyncSession,
    *,
    customer_id: str,
    tenant_id: str | None = None,
    sponsor_id: str | None = None,
    for_update: bool = False,
) -> tuple[Sponsor | None, CustomerDay]:
    """A utility's sponsor (by tenant or by id) and what it has spent on this customer today,
    in one statement. ``for_update`` locks the sponsor's row and re-reads it (``lock``), then
    reads the customer's day as of the lock in a second statement (docs/relayer.md,
    "Sponsorship")."""
    parameters = {
        "customer_id": customer_id,
        "day": today(),
        "sponsor": sponsor_id if sponsor_id is not None else tenant_id,
    }
    if for_update:
        lock_statement = _LOCK_BY_ID if sponsor_id is not None else _LOCK_BY_TENANT
        sponsor = (await session.execute(lock_statement, parameters)).scalar_one_or_none()
        day = today()
        if sponsor is None:
            return None, CustomerDay(day, 0)
        spent = await customer_day_spent(session, sponsor.id, customer_id, day)
        return sponsor, CustomerDay(day, spent)
    row = (await session.execute(_WITH_CUSTOMER_DAY[sponsor_id is not None], parameters)).first()
    if row is None:
        return None, CustomerDay(parameters["day"], 0)
    return row[0], CustomerDay(parameters["day"], int(row[1] or 0))


async def lock(session: AsyncSession, sponsor: Sponsor | str) -> Sponsor:
    """The sponsor's row, locked (``FOR NO KEY UPDATE``) and re-read: budget checks and total
    updates of one sponsor are serialised and see current totals (docs/relayer.md, "Locks")."""
    sponsor_id = sponsor if isinstance(sponsor, str) else sponsor.id
    return (await session.execute(_LOCK_BY_ID, {"sponsor": sponsor_id})).scalar_one()


async def lock_in_order(session: AsyncSession, sponsor_ids: Iterable[str]) -> dict[str, Sponsor]:
    """These sponsors' rows, locked (``lock``) in sorted id order: the one order in which every
    transaction that locks several sponsors takes them, so that no two of them can each hold a
    sponsor the other waits for."""
    return {sponsor_id: await lock(session, sponsor_id) for sponsor_id in sorted(set(sponsor_ids))}


async def lock_of_tenant(session: AsyncSession, tenant_id: str) -> Sponsor | None:
    statement = (
        select(Sponsor).where(Sponsor.tenant_id == tenant_id).with_for_update(key_share=True)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def open_charge(session: AsyncSession, relay_transaction_id: str) -> SponsorCharge | None:
    """The job's unsettled charge (its reservation), re-read."""
    statement = (
        select(SponsorCharge)
        .where(
            SponsorCharge.relay_transaction_id == relay_transaction_id,
            SponsorCharge.settled.is_(False),
        )
        .execution_options(populate_existing=True)
    )
    return (await session.execute(statement)).scalar_one_or_none()


def _unsettled(job_ids: Iterable[str]) -> tuple[Any, Any]:
    return (
        SponsorCharge.relay_transaction_id.in_(list(job_ids)),
        SponsorCharge.settled.is_(False),
    )


async def sponsors_of_unsettled(session: AsyncSession, job_ids: Iterable[str]) -> set[str]:
    statement = select(SponsorCharge.sponsor_id).where(*_unsettled(job_ids))
    return set((await session.execute(statement)).scalars())


async def unsettled_charges(session: AsyncSession, job_ids: Iterable[str]) -> list[SponsorCharge]:
    statement = (
        select(SponsorCharge).where(*_unsettled(job_ids)).execution_options(populate_existing=True)
    )
    return list((await session.execute(statement)).scalars())


async def customer_days(
    session: AsyncSession, day_keys: set[tuple[str, str, str]]
) -> dict[tuple[str, str, str], SponsorCustomerDay]:
    """(sponsor id, customer id, day) → its row, re-read, of those of ``day_keys`` that exist."""
    if not day_keys:
        return {}
    statement = (
        select(SponsorCustomerDay)
        .where(
            tuple_(
                SponsorCustomerDay.sponsor_id,
                SponsorCustomerDay.customer_id,
                SponsorCustomerDay.day,
            ).in_(list(day_keys))
        )
        .execution_options(populate_existing=True)
    )
    return {
        (row.sponsor_id, row.customer_id, row.day): row
        for row in (await session.execute(statement)).scalars()
    }


async def funding_of(
    session: AsyncSession, *, sponsor_id: str, idempotency_key: str
) -> SponsorFunding | None:
    statement = select(SponsorFunding).where(
        SponsorFunding.sponsor_id == sponsor_id,
        SponsorFunding.idempotency_key == idempotency_key,
    )
    return (await session.execute(statement)).scalar_one_or_none()


FUNDINGS = SponsorFunding.__table__
_JOBS = RelayTransaction.__table__


async def sponsors_of_pending_fundings(session: AsyncSession, job_ids: list[str]) -> set[str]:
    statement = select(FUNDINGS.c.sponsor_id).where(
        FUNDINGS.c.relay_transaction_id.in_(job_ids),
        FUNDINGS.c.status == FundingStatus.PENDING.value,
    )
    return set((await session.execute(statement)).scalars())


async def mark_confirmed_fundings_credited(
    session: AsyncSession, job_ids: list[str], *, now: datetime
) -> list[tuple[str, int]]:
    """PENDING fundings of these jobs whose job is CONFIRMED become CREDITED, in one guarded
    UPDATE: (sponsor id, credit) of each row it moved. A second writer (another worker, a
    retried round) finds them CREDITED and moves none."""
    confirmed = select(_JOBS.c.id).where(
        _JOBS.c.id.in_(job_ids), _JOBS.c.status == RelayStatus.CONFIRMED.value
    )
    statement = (
        update(FUNDINGS)
        .where(
            FUNDINGS.c.relay_transaction_id.in_(confirmed),
            FUNDINGS.c.status == FundingStatus.PENDING.value,
        )
        .values(status=FundingStatus.CREDITED.value, credited_at=now)
        .returning(FUNDINGS.c.sponsor_id, FUNDINGS.c.amount_wei)
        .execution_options(synchronize_session=False)
    )
    return [(row[0], int(row[1])) for row in (await session.execute(statement)).all()]


def _with_job_status() -> Any:
    return select(SponsorFunding, _JOBS.c.status).outerjoin(
        _JOBS, _JOBS.c.id == SponsorFunding.relay_transaction_id
    )


async def fundings_of_sponsor(
    session: AsyncSession, sponsor_id: str, *, first: int
) -> list[tuple[SponsorFunding, str | None]]:
    """The sponsor's newest fundings, each with its job's status (``None``: no job)."""
    statement = (
        _with_job_status()
        .where(SponsorFunding.sponsor_id == sponsor_id)
        .order_by(SponsorFunding.created_at.desc(), SponsorFunding.id.desc())
        .limit(first)
    )
    return [(row[0], row[1]) for row in (await session.execute(statement)).all()]


async def pending_funding_wei(session: AsyncSession, sponsor_id: str) -> int:
    """What the sponsor's pending fundings will add once their jobs are confirmed (a failed
    job's adds nothing)."""
    statement = (
        select(SponsorFunding.amount_wei)
        .join(_JOBS, _JOBS.c.id == SponsorFunding.relay_transaction_id)
        .where(
            SponsorFunding.sponsor_id == sponsor_id,
            SponsorFunding.status == FundingStatus.PENDING.value,
            _JOBS.c.status != RelayStatus.FAILED.value,
        )
    )
    return sum(int(amount) for amount in (await session.execute(statement)).scalars())
