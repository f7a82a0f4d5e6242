"""Refunds of undelivered payments: a payment whose delivery failed sent no token, so its money
goes back in full once the relayer says the delivery can never execute."""

from __future__ import annotations

import logging

from onramp.deps import OnrampServices
from onramp.events import apply_intent_state
from onramp.models import OnrampPayment, PaymentStatus
from onramp.stripe_gateway import require_gateway
from relayer.finality import job_can_never_execute

logger = logging.getLogger(__name__)


def refund_key(payment_intent_id: str, already_refunded: int) -> str:
    """Stripe's Idempotency-Key for giving back what is left of an undelivered payment: one
    refund for each amount already given back, however often it is asked for."""
    return f"ovpp-undelivered-{payment_intent_id}-{already_refunded}"


async def refund_undelivered(services: OnrampServices, payment_id: str) -> str | None:
    """Give back a DELIVERY_FAILED payment's money in full, once the relayer says its delivery
    can never execute (``job_can_never_execute``); returns the payment's new status when it
    moved (REFUNDED). A disputed charge is left to the dispute and an operator: Stripe refuses
    to refund it. A charge with a refund that failed is not refunded again (the card that paid
    refused it, and a refund can go to no other): the payment becomes REFUND_FAILED, for an
    operator.

    Stripe is called outside any transaction and the payment moves only on what a re-read of
    the PaymentIntent shows, so a crash after the refund and before the update is repaired by
    the next round: it finds the refund already made (or repeats the idempotent request)."""
    gateway = require_gateway(services.stripe)
    async with services.db.session() as session:
        payment = await session.get(OnrampPayment, payment_id)
    if payment is None or payment.status != PaymentStatus.DELIVERY_FAILED:
        return None
    job_id = payment.delivery_transaction_id
    if job_id is not None and not await job_can_never_execute(services, job_id):
        return None
    payment_intent_id = payment.stripe_payment_intent_id
    state = await gateway.payment_intent(payment_intent_id)
    if (
        state.succeeded
        and not state.disputed
        and not state.amount_refund_failed
        and state.amount_refunded < state.amount
    ):
        await gateway.refund(
            payment_intent_id,
            amount=state.amount - state.amount_refunded,  # what is left: nothing twice
            idempotency_key=refund_key(payment_intent_id, state.amount_refunded),
            reason="the tokens could not be delivered",
        )
        state = await gateway.payment_intent(payment_intent_id)
    async with services.db.session() as session:
        moved = await apply_intent_state(session, payment_id=payment_id, state=state)
    if moved is not None:
        logger.warning(
            "onramp payment %s (%s) was not delivered and is %s: %s of %s given back",
            payment_id,
            payment_intent_id,
            moved,
            state.amount_refunded,
            state.amount,
        )
    return moved
