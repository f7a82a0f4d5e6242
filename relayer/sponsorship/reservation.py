"""Reserving a sponsored job's worst-case cost in its sponsor's running totals: when the job
is queued (``reserve``, ``reserve_within_budget``) and before a fee bump (``reserve_fee_bump``)."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import insert_rows, upsert, utc_now
from relayer.errors import SponsorRefused
from relayer.models import Sponsor, SponsorCharge, SponsorCustomerDay
from relayer.sponsorship import repository
from relayer.sponsorship.rules import (
    CustomerDay,
    refusal,
    require_budget,
    roll_period,
    sponsorship_ended,
    today,
)

# SQLSTATE of a refusal raised by the reservation at commit (migration 0014).
SPONSOR_REFUSED_SQLSTATE = "OV001"


async def check_budget(
    session: AsyncSession,
    *,
    sponsor: Sponsor,
    customer_id: str,
    cost_wei: int,
    sponsored_program: bool = False,
) -> None:
    """``require_budget`` with the customer's day read here."""
    require_budget(
        sponsor,
        cost_wei=cost_wei,
        customer_day_spent_wei=await repository.customer_day_spent(
            session, sponsor.id, customer_id, today()
        ),
        sponsored_program=sponsored_program,
    )


async def reserve(
    session: AsyncSession,
    *,
    sponsor: Sponsor,
    customer_id: str,
    charge: SponsorCharge,
    customer_day: CustomerDay | None = None,
) -> None:
    """Record a sponsored job's worst-case cost in the running totals, the sponsor's row
    locked. One instant read under the lock decides the period, the customer's day and the
    charge's ``created_at`` (docs/relayer.md, "Sponsorship"); ``customer_day`` (read under the
    lock) is used only if it is that day's, otherwise the day is read here."""
    now = utc_now()
    roll_period(sponsor, now=now)
    sponsor.spent_wei += charge.amount_wei
    sponsor.period_spent_wei += charge.amount_wei
    session.add(sponsor)
    day = now.date().isoformat()
    if customer_day is not None and customer_day.day == day:
        customer_day_spent_wei = customer_day.spent_wei
    else:
        customer_day_spent_wei = await repository.customer_day_spent(
            session, sponsor.id, customer_id, day
        )
    charge.created_at = now
    await upsert(
        session,
        SponsorCustomerDay.__table__,
        {
            "sponsor_id": sponsor.id,
            "customer_id": customer_id,
            "day": day,
            "spent_wei": customer_day_spent_wei + charge.amount_wei,
        },
        update=("spent_wei",),
    )
    await insert_rows(session, charge)


async def reserve_within_budget(
    session: AsyncSession,
    *,
    sponsor_id: str,
    customer_id: str,
    relay_transaction_id: str,
    cost_wei: int,
) -> None:
    """Reserve ``cost_wei`` of the sponsor's budget for a sponsored transfer's job, inserted in
    this transaction, or refuse with ``SponsorRefused`` and change nothing. On PostgreSQL the
    reservation is made at commit, so the caller must commit with ``commit_reserving``
    (docs/relayer.md, "Sponsorship")."""
    if session.get_bind().dialect.name == "postgresql":
        await insert_rows(
            session,
            SponsorCharge(
                sponsor_id=sponsor_id,
                customer_id=customer_id,
                relay_transaction_id=relay_transaction_id,
                amount_wei=cost_wei,
                created_at=utc_now(),
                reserve_on_commit=True,
            ),
        )
        return
    sponsor, customer_day = await repository.with_customer_day(
        session, sponsor_id=sponsor_id, customer_id=customer_id, for_update=True
    )
    if sponsor is None:
        raise sponsorship_ended()
    require_budget(sponsor, cost_wei=cost_wei, customer_day_spent_wei=customer_day.spent_wei)
    await reserve(
        session,
        sponsor=sponsor,
        customer_id=customer_id,
        charge=SponsorCharge(
            sponsor_id=sponsor_id,
            customer_id=customer_id,
            relay_transaction_id=relay_transaction_id,
            amount_wei=cost_wei,
        ),
        customer_day=customer_day,
    )


async def commit_reserving(session: AsyncSession) -> None:
    """Commit a transaction that may hold a reservation ``reserve_within_budget`` left to the
    commit (PostgreSQL). A refusal rolls the whole transaction back and raises
    ``SponsorRefused`` with the rule's name, as ``require_budget`` would have."""
    try:
        await session.commit()
    except DBAPIError as error:
        refused = _refusal_at_commit(error)
        if refused is None:
            raise
        raise refused from None


def _refusal_at_commit(error: DBAPIError) -> SponsorRefused | None:
    # The driver's own exception (asyncpg's) carries the trigger's MESSAGE, DETAIL and HINT.
    raised = error.orig.__cause__ if error.orig is not None else None
    if getattr(raised, "sqlstate", None) != SPONSOR_REFUSED_SQLSTATE:
        return None
    reason = str(raised.message)  # type: ignore[union-attr]
    if reason == "ENDED":
        return sponsorship_ended()
    return refusal(
        reason,
        sponsor_name=str(raised.detail),  # type: ignore[union-attr]
        per_transaction_cap_wei=int(raised.hint),  # type: ignore[union-attr]
    )


async def reserve_fee_bump(
    session: AsyncSession,
    *,
    sponsor_id: str,
    relay_transaction_id: str,
    gas_limit: int,
    max_fee_per_gas: int,
    min_max_fee_per_gas: int,
) -> int | None:
    """Before a sponsored job is signed again at ``max_fee_per_gas``, grow its reservation to
    ``gas_limit`` × the fee as far as the sponsor's remaining funds allow (its caps are not
    applied). Returns the highest fee up to ``max_fee_per_gas`` now covered; ``None``, changing
    nothing, below ``min_max_fee_per_gas`` or without an open reservation. Takes the sponsor's
    lock, which the caller's round has already taken in its one pass (docs/relayer.md,
    "Fee bumps")."""
    sponsor = await repository.lock(session, sponsor_id)
    charge = await repository.open_charge(session, relay_transaction_id)
    if charge is None:
        return None
    remaining_funds_wei = max(sponsor.funds_wei - sponsor.spent_wei, 0)
    covered = min(max_fee_per_gas, (charge.amount_wei + remaining_funds_wei) // gas_limit)
    if covered < min_max_fee_per_gas:
        return None
    growth = gas_limit * covered - charge.amount_wei
    if growth <= 0:
        return covered
    # The growth goes wherever the reservation went, so that its settlement takes it all back.
    sponsor.spent_wei += growth
    if charge.created_at >= sponsor.period_started_at:
        sponsor.period_spent_wei += growth
    day_key = (sponsor.id, charge.customer_id, charge.created_at.date().isoformat())
    day = await session.get(SponsorCustomerDay, day_key, populate_existing=True)
    if day is None:  # written with the charge, so only ever missing from older data
        day = SponsorCustomerDay(
            sponsor_id=day_key[0], customer_id=day_key[1], day=day_key[2], spent_wei=0
        )
    day.spent_wei += growth
    charge.amount_wei += growth
    session.add_all([sponsor, charge, day])
    await session.flush()
    return covered
