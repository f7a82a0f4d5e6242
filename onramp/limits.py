"""Per-customer card limits (review H6; docs/onramp.md, "Hold and limits"): what a customer
pays by card in any 24 hours and in any 30 days stays within ``OVPP_ONRAMP_CUSTOMER_LIMIT_DAY``
and ``OVPP_ONRAMP_CUSTOMER_LIMIT_30_DAYS``, checked before any PaymentIntent exists.

Counted: every payment made in the window that was paid or may still be: awaiting its card
(a payment sheet the customer may still complete), paid, delivered (refunded or disputed after
delivery too: the tokens went out), disputed or refund-failed before delivery. Not counted:
canceled ones, and those whose money went back whole with nothing sent (REFUNDED,
DELIVERY_FAILED on its way to REFUNDED). The whole fiat amount counts, fee included.

Two payments of one customer never both pass: the check takes the customer's lock first
(``repository.lock_customer_for_card_payment``) and the request holds it through the
PaymentIntent's creation until the payment's row is committed (``payments.insert_payment``),
so the second reads the first's row."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from chain.tokens import format_units
from core.db import utc_now
from core.settings import Settings
from onramp import repository
from onramp.errors import CardLimitExceeded
from onramp.models import PaymentStatus
from onramp.pricing import FIAT_DECIMALS, PricingError, parse_fiat

COUNTED = tuple(
    status.value
    for status in (
        PaymentStatus.REQUIRES_PAYMENT,
        PaymentStatus.PAYMENT_FAILED,
        PaymentStatus.PAID,
        PaymentStatus.DELIVERING,
        PaymentStatus.DELIVERED,
        PaymentStatus.DISPUTED,
        PaymentStatus.REFUND_FAILED,
    )
)
"""The payments that count toward the limits (see the module's docstring)."""


@dataclass(frozen=True)
class CardLimits:
    """A customer's card limits and what they used of them, in fiat minor units."""

    currency: str
    per_day: int
    used_day: int
    per_30_days: int
    used_30_days: int

    @property
    def left_day(self) -> int:
        return max(self.per_day - self.used_day, 0)

    @property
    def left_30_days(self) -> int:
        return max(self.per_30_days - self.used_30_days, 0)


def configured_limits(settings: Settings) -> tuple[int, int]:
    """(per 24 hours, per 30 days) in fiat minor units."""
    try:
        return (
            parse_fiat(settings.onramp_customer_limit_day),
            parse_fiat(settings.onramp_customer_limit_30_days),
        )
    except PricingError as error:
        raise CardLimitExceeded(
            "card payments are not available here: the operator's card limits are not valid"
        ) from error


async def card_limits(session: AsyncSession, *, settings: Settings, customer_id: str) -> CardLimits:
    """The customer's limits and what their counted payments used of them, now."""
    per_day, per_30_days = configured_limits(settings)
    now = utc_now()
    used_day, used_30_days = await repository.card_totals(
        session,
        customer_id=customer_id,
        statuses=COUNTED,
        day_since=now - timedelta(days=1),
        month_since=now - timedelta(days=30),
    )
    return CardLimits(
        currency=settings.onramp_currency.lower(),
        per_day=per_day,
        used_day=used_day,
        per_30_days=per_30_days,
        used_30_days=used_30_days,
    )


async def require_within_limits(
    session: AsyncSession, *, settings: Settings, customer_id: str, fiat_amount: int
) -> None:
    """Take the customer's card-payment lock, then refuse (``CardLimitExceeded``) a payment of
    ``fiat_amount`` that would pass either limit."""
    await repository.lock_customer_for_card_payment(session, customer_id)
    limits = await card_limits(session, settings=settings, customer_id=customer_id)
    for limit, left, period in (
        (limits.per_day, limits.left_day, "24 hours"),
        (limits.per_30_days, limits.left_30_days, "30 days"),
    ):
        if fiat_amount > left:
            currency = limits.currency.upper()
            raise CardLimitExceeded(
                f"card purchases are limited to {_fiat(limit)} {currency} per {period} per "
                f"customer: {_fiat(left)} {currency} is left, {_fiat(fiat_amount)} {currency} "
                "was asked; nothing was charged"
            )


def _fiat(amount: int) -> str:
    return format_units(amount, FIAT_DECIMALS)
