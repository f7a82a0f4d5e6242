"""A utility's sponsorship: set up by the operator, and funded only by value that reached the
operator: the utility's tokens moved to the fee treasury on chain (credited once their job is
confirmed), or a payment the operator credits by hand, naming who and the payment's reference.
No API call adds funds by itself (docs/relayer.md, "Sponsorship funds")."""

from __future__ import annotations

import time
from fractions import Fraction

from sqlalchemy.ext.asyncio import AsyncSession

from chain.tokens import TokenInfo, TokenKind
from core.db import insert_rows, utc_now
from core.errors import InvalidInput
from relayer.models import FundingSource, FundingStatus, Sponsor, SponsorFunding
from relayer.pricing import PriceOracle, PriceUnavailable
from relayer.sponsorship import repository

OPERATOR_KEY_PREFIX = "operator:"
"""An operator's credit is keyed by its payment reference: one payment is credited once."""


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
    """Create or update a utility's sponsorship. ``add_funds_wei`` tops its funds up without a
    record: for development seeds and tests only (operators use ``credit_by_operator``)."""
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


async def sponsor_to_fund(session: AsyncSession, *, tenant_id: str, name: str) -> Sponsor:
    """The utility's sponsorship, created with the default caps if it has none (an existing
    one is neither locked nor changed)."""
    sponsor = await repository.sponsor_of_tenant(session, tenant_id)
    if sponsor is None:
        sponsor = await configure_sponsor(session, tenant_id=tenant_id, name=name)
    return sponsor


async def gas_funds_of(
    amount: int, *, token: TokenInfo, oracle: PriceOracle, max_age_seconds: int
) -> int:
    """``amount`` base units of ``token`` in native-token wei at the oracle's rates, rounded
    down: ``amount × P_token / P_native × 10^18 / 10^decimals``."""
    native, price = await oracle.price(TokenKind.NATIVE), await oracle.price(token.kind)
    now = time.time()
    for observed in (native, price):
        if now - observed.observed_at > max_age_seconds:
            raise PriceUnavailable("the token price is stale; try again in a moment")
        if observed.usd <= 0:
            raise PriceUnavailable("the token price is not usable")
    wei = Fraction(amount) * price.usd / native.usd * Fraction(10**18, 10**token.decimals)
    return wei.numerator // wei.denominator


async def record_on_chain_funding(
    session: AsyncSession,
    *,
    sponsor_id: str,
    idempotency_key: str,
    token: TokenInfo,
    token_amount: int,
    credit_wei: int,
    relay_transaction_id: str,
) -> SponsorFunding:
    """A ``PENDING`` funding: ``credit_wei`` is added to the sponsor's funds once its job,
    which moves ``token_amount`` of ``token`` to the fee treasury, is confirmed
    (``credit_confirmed_fundings``)."""
    funding = SponsorFunding(
        sponsor_id=sponsor_id,
        idempotency_key=idempotency_key,
        amount_wei=credit_wei,
        source=FundingSource.ON_CHAIN.value,
        status=FundingStatus.PENDING.value,
        token=token.kind.value,
        token_amount=token_amount,
        relay_transaction_id=relay_transaction_id,
    )
    await insert_rows(session, funding)
    return funding


async def credit_by_operator(
    session: AsyncSession,
    *,
    tenant_id: str,
    name: str,
    amount_wei: int,
    operator: str,
    reference: str,
) -> Sponsor:
    """The operator credits ``amount_wei`` for a payment it received (``reference``, credited
    once), recorded with who did it."""
    if amount_wei <= 0:
        raise InvalidInput("a credit adds a positive amount", field="amount")
    operator, reference = operator.strip(), reference.strip()
    if not 1 <= len(operator) <= 200:
        raise InvalidInput("name the operator (1 to 200 characters)", field="operator")
    if not 1 <= len(reference) <= 255 - len(OPERATOR_KEY_PREFIX):
        raise InvalidInput("give the payment's reference (1 to 245 characters)", field="reference")
    sponsor = await sponsor_to_fund(session, tenant_id=tenant_id, name=name)
    sponsor = await repository.lock(session, sponsor)
    key = OPERATOR_KEY_PREFIX + reference
    if await repository.funding_of(session, sponsor_id=sponsor.id, idempotency_key=key):
        raise InvalidInput(f"payment {reference!r} was credited already", field="reference")
    now = utc_now()
    session.add(
        SponsorFunding(
            sponsor_id=sponsor.id,
            idempotency_key=key,
            amount_wei=amount_wei,
            source=FundingSource.OPERATOR.value,
            status=FundingStatus.CREDITED.value,
            operator=operator,
            reference=reference,
            created_at=now,
            credited_at=now,
        )
    )
    sponsor.funds_wei += amount_wei
    session.add(sponsor)
    await session.flush()
    return sponsor


async def credit_confirmed_fundings(session: AsyncSession, job_ids: list[str]) -> int:
    """Credit the pending fundings of those of these jobs that are ``CONFIRMED``, each once:
    the funding's move to ``CREDITED`` is guarded by its status in SQL, and only the rows it
    moved are added to their sponsors' funds. The caller holds the sponsors' locks
    (``pending_funding_sponsors``, taken in its sorted pass). Returns the number credited."""
    credited = await repository.mark_confirmed_fundings_credited(session, job_ids, now=utc_now())
    by_sponsor: dict[str, int] = {}
    for sponsor_id, amount_wei in credited:  # summed in Python: exact on SQLite too
        by_sponsor[sponsor_id] = by_sponsor.get(sponsor_id, 0) + int(amount_wei)
    for sponsor_id, sponsor in (await repository.lock_in_order(session, by_sponsor)).items():
        sponsor.funds_wei += by_sponsor[sponsor_id]
        session.add(sponsor)
    await session.flush()
    return len(credited)


async def pending_funding_sponsors(session: AsyncSession, job_ids: list[str]) -> set[str]:
    """The sponsors of pending fundings of these jobs: to lock before crediting them."""
    if not job_ids:
        return set()
    return await repository.sponsors_of_pending_fundings(session, job_ids)
