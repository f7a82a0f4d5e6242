"""Canceling a card payment nobody has paid. Stripe is asked first, with no lock held, and
decides a cancel racing the customer's payment; the row then moves to what Stripe says
(``events.apply_intent_state``, a guarded update), so a payment Stripe is processing or has
taken is never canceled here: it is delivered as usual."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from onramp import events, repository
from onramp.deps import OnrampServices
from onramp.errors import PaymentProviderUnavailable, PaymentUnderWay
from onramp.models import AWAITING_PAYMENT, OnrampPayment, PaymentStatus
from onramp.stripe_gateway import StripeObjectMissing, require_gateway

logger = logging.getLogger(__name__)

UNDER_WAY = "the card payment is being paid or was paid, so it can no longer be canceled"
NOT_CANCELED = "the payment provider could not cancel the payment just now; try again in a moment"


async def cancel_unpaid(
    session: AsyncSession, *, services: OnrampServices, payment: OnrampPayment, reason: str
) -> None:
    """The payment CANCELED at Stripe and in its row (its ``error`` saying ``reason``), or
    already so. ``PaymentUnderWay`` when it is paid or being paid: then only what Stripe says
    is recorded (a payment taken behind a lost webhook becomes PAID and is delivered), and the
    caller keeps what waits on the payment. Nothing is written before Stripe answers."""
    if payment.status == PaymentStatus.CANCELED:
        return
    if payment.status not in AWAITING_PAYMENT:
        raise PaymentUnderWay(UNDER_WAY)
    gateway = require_gateway(services.stripe)
    try:
        state = await gateway.cancel_unpaid(payment.stripe_payment_intent_id)
    except StripeObjectMissing as missing:
        logger.warning("onramp payment %s: Stripe does not know %s", payment.id, missing)
        raise PaymentProviderUnavailable(NOT_CANCELED) from missing
    await events.apply_intent_state(session, payment_id=payment.id, state=state)
    fresh = await session.get(OnrampPayment, payment.id, populate_existing=True)
    status = fresh.status if fresh is not None else payment.status
    if status == PaymentStatus.CANCELED:
        await repository.move_payment(
            session,
            payment_id=payment.id,
            from_statuses=(PaymentStatus.CANCELED.value,),
            values={"error": reason[:500]},
        )
        return
    if state.status in ("processing", "succeeded") or status not in AWAITING_PAYMENT:
        raise PaymentUnderWay(UNDER_WAY)
    logger.warning("onramp payment %s: Stripe did not cancel it (%s)", payment.id, state.status)
    raise PaymentProviderUnavailable(NOT_CANCELED)
