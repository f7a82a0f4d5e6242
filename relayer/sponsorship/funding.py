"""A utility's sponsorship set up and funded by its operator."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import InvalidInput
from relayer.models import Sponsor, SponsorFunding
from relayer.sponsorship import repository


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
    sponsor = await repository.lock_of_tenant(session, tenant_id)
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


async def fund_sponsor(
    session: AsyncSession, *, tenant_id: str, name: str, amount_wei: int, idempotency_key: str
) -> Sponsor:
    """Add ``amount_wei`` to the utility's sponsorship funds once per idempotency key."""
    if amount_wei <= 0:
        raise ValueError("a funding adds a positive amount")
    sponsor = await configure_sponsor(session, tenant_id=tenant_id, name=name)
    existing = await repository.funding_of(
        session, sponsor_id=sponsor.id, idempotency_key=idempotency_key
    )
    if existing is not None:
        if existing.amount_wei != amount_wei:
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
