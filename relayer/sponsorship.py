"""Gas sponsorship by a utility. A sponsored action costs the customer nothing; a refusal is
typed and names its reason, and never falls back to charging the customer."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import utc_now
from relayer.errors import SponsorRefused
from relayer.models import Sponsor, SponsorCharge


async def sponsor_of_tenant(session: AsyncSession, tenant_id: str) -> Sponsor | None:
    statement = select(Sponsor).where(Sponsor.tenant_id == tenant_id)
    return (await session.execute(statement)).scalar_one_or_none()


async def check_budget(
    session: AsyncSession,
    *,
    sponsor: Sponsor,
    customer_id: str,
    cost_wei: int,
    sponsored_program: bool = False,
) -> None:
    """Raise ``SponsorRefused`` unless ``sponsor`` can cover ``cost_wei`` for this customer.
    Reserved (unsettled) charges count at their reserved worst case. ``sponsored_program``:
    the action is an enrollment in a program whose fee the utility pays, whose gas it covers
    even when it does not sponsor its customers' other actions."""
    if not sponsor.active or not (sponsor.sponsors_transfers or sponsored_program):
        raise SponsorRefused(
            f"{sponsor.name} does not sponsor this action",
            reason="NOT_ELIGIBLE",
            sponsor_name=sponsor.name,
        )
    if cost_wei > sponsor.per_transaction_cap_wei:
        raise SponsorRefused(
            f"{sponsor.name} covers at most {sponsor.per_transaction_cap_wei} wei of gas "
            "per transaction",
            reason="PER_TRANSACTION_CAP",
            sponsor_name=sponsor.name,
        )
    charges = list(
        (
            await session.execute(
                select(SponsorCharge).where(SponsorCharge.sponsor_id == sponsor.id)
            )
        ).scalars()
    )
    spent_total = sum(charge.amount_wei for charge in charges)
    if spent_total + cost_wei > sponsor.funds_wei:
        raise SponsorRefused(
            f"{sponsor.name}'s sponsorship funds are spent",
            reason="BUDGET_EXHAUSTED",
            sponsor_name=sponsor.name,
        )
    now = utc_now()
    period_start = _aware(sponsor.period_started_at)
    while period_start + timedelta(seconds=sponsor.period_seconds) <= now:
        period_start += timedelta(seconds=sponsor.period_seconds)
    in_period = sum(c.amount_wei for c in charges if _aware(c.created_at) >= period_start)
    if in_period + cost_wei > sponsor.period_cap_wei:
        raise SponsorRefused(
            f"{sponsor.name}'s budget for this period is spent",
            reason="PERIOD_CAP",
            sponsor_name=sponsor.name,
        )
    day_ago = now - timedelta(days=1)
    customer_day = sum(
        c.amount_wei
        for c in charges
        if c.customer_id == customer_id and _aware(c.created_at) >= day_ago
    )
    if customer_day + cost_wei > sponsor.per_customer_daily_cap_wei:
        raise SponsorRefused(
            f"{sponsor.name} covers a limited amount of gas per customer per day; "
            "try again tomorrow",
            reason="CUSTOMER_DAILY_CAP",
            sponsor_name=sponsor.name,
        )


def _aware(moment):  # type: ignore[no-untyped-def]
    from datetime import UTC

    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def lock(session: AsyncSession, sponsor: Sponsor) -> None:
    """Serialise budget checks of one sponsor (row lock in PostgreSQL; SQLite has one writer)."""
    await session.execute(select(Sponsor.id).where(Sponsor.id == sponsor.id).with_for_update())


async def configure_sponsor(
    session: AsyncSession,
    *,
    tenant_id: str,
    name: str,
    add_funds_wei: int = 0,
    per_transaction_cap_wei: int | None = None,
    per_customer_daily_cap_wei: int | None = None,
    period_cap_wei: int | None = None,
    period_seconds: int | None = None,
    active: bool | None = None,
) -> Sponsor:
    """Create or update a utility's sponsorship; ``add_funds_wei`` tops its funds up."""
    if add_funds_wei < 0:
        raise ValueError("funds can only be added")
    sponsor = (
        await session.execute(
            select(Sponsor).where(Sponsor.tenant_id == tenant_id).with_for_update()
        )
    ).scalar_one_or_none()
    if sponsor is None:
        sponsor = Sponsor(
            tenant_id=tenant_id,
            name=name,
            funds_wei=0,
            per_transaction_cap_wei=per_transaction_cap_wei or 10**16,
            per_customer_daily_cap_wei=per_customer_daily_cap_wei or 10**17,
            period_cap_wei=period_cap_wei or 10**19,
        )
    sponsor.name = name
    sponsor.funds_wei += add_funds_wei
    if per_transaction_cap_wei is not None:
        sponsor.per_transaction_cap_wei = per_transaction_cap_wei
    if per_customer_daily_cap_wei is not None:
        sponsor.per_customer_daily_cap_wei = per_customer_daily_cap_wei
    if period_cap_wei is not None:
        sponsor.period_cap_wei = period_cap_wei
    if period_seconds is not None:
        sponsor.period_seconds = period_seconds
    if active is not None:
        sponsor.active = active
    session.add(sponsor)
    await session.flush()
    return sponsor


async def spent_wei(session: AsyncSession, sponsor_id: str) -> int:
    rows = await session.execute(
        select(SponsorCharge.amount_wei).where(SponsorCharge.sponsor_id == sponsor_id)
    )
    return sum(int(amount) for (amount,) in rows.all())


async def fund_sponsor(
    session: AsyncSession, *, tenant_id: str, name: str, amount_wei: int, idempotency_key: str
) -> Sponsor:
    """Add ``amount_wei`` to the utility's sponsorship funds once per idempotency key."""
    from relayer.models import SponsorFunding

    if amount_wei <= 0:
        raise ValueError("a funding adds a positive amount")
    sponsor = await configure_sponsor(session, tenant_id=tenant_id, name=name)
    existing = (
        await session.execute(
            select(SponsorFunding).where(
                SponsorFunding.sponsor_id == sponsor.id,
                SponsorFunding.idempotency_key == idempotency_key,
            )
        )
    ).scalar_one_or_none()
    if existing is not None:
        if existing.amount_wei != amount_wei:
            from relayer.errors import InvalidInput

            raise InvalidInput(
                "this idempotency key was used for another amount", field="idempotencyKey"
            )
        return sponsor
    session.add(
        SponsorFunding(
            sponsor_id=sponsor.id, idempotency_key=idempotency_key, amount_wei=amount_wei
        )
    )
    sponsor.funds_wei += amount_wei
    session.add(sponsor)
    await session.flush()
    return sponsor
