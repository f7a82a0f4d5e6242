"""Stripe events and the payment state machine: a verified event is stored once, then acted on
by re-reading the PaymentIntent and moving the payment to what Stripe says now."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from chain.tokens import format_units
from core.db import utc_now
from onramp import recovery, repository
from onramp.deps import OnrampServices
from onramp.errors import PaymentProviderUnavailable
from onramp.models import (
    AWAITING_PAYMENT,
    DELIVERY_STARTED,
    NEVER_DELIVERED,
    NOT_SENT_MONEY_BACK,
    OnrampPayment,
    PaymentStatus,
    StripeEvent,
    operator_case,
)
from onramp.pricing import FIAT_DECIMALS
from onramp.resolution import describe_outdated_resolution
from onramp.stripe_gateway import (
    IntentState,
    StripeObjectMissing,
    VerifiedEvent,
    event_object,
    require_gateway,
)

logger = logging.getLogger(__name__)


async def record_event(connection: AsyncConnection, event: VerifiedEvent) -> bool:
    """Store a verified event once; ``False`` when it was stored before (a redelivery). One
    ``INSERT … ON CONFLICT DO NOTHING`` on an autocommit connection (``Database.autocommit``):
    stored for good when this returns, in one round trip."""
    return await repository.insert_event_if_absent(
        connection,
        {
            "id": str(uuid.uuid4()),
            "stripe_event_id": event.id,
            "type": event.type,
            "object_id": event.object_id,
            "payment_intent_id": event.payment_intent_id,
            "payload": event.payload,
            "stripe_created": event.created,
            "received_at": utc_now(),
            "attempts": 0,
        },
    )


PAYMENT_INTENT_EVENTS = ("payment_intent.",)
NO_PAYMENT = "no onramp payment for this PaymentIntent"
MONEY_BACK_EVENTS = ("charge.refunded", "charge.refund.", "refund.", "charge.dispute.")


async def process_event(services: OnrampServices, event_id: str) -> str | None:
    """Act on one stored event in its own transaction; returns the payment it touched. Safe to
    run again, and from two processors at once: it only ever re-reads Stripe and applies what
    Stripe says now through guarded updates. Stripe is read before the first write, so no
    lock is held during a network call. A PaymentIntent no row has is given one from its
    metadata (``recovery``), or the event says why not."""
    gateway = require_gateway(services.stripe)
    async with services.db.session() as session:
        event = await session.get(StripeEvent, event_id)
        if event is None or event.processed_at is not None:
            return None
        relevant = event.type.startswith(PAYMENT_INTENT_EVENTS) or event.type.startswith(
            MONEY_BACK_EVENTS
        )
        if not relevant:
            await repository.mark_event_processed(session, event.id, note="not an onramp event")
            return None
        payment_intent_id = event.payment_intent_id
        if payment_intent_id is None and (charge_id := _charge_of(event)) is not None:
            try:
                payment_intent_id = await gateway.payment_intent_of_charge(charge_id)
            except StripeObjectMissing:
                payment_intent_id = None
        if payment_intent_id is None:
            await repository.mark_event_processed(session, event.id, note=NO_PAYMENT)
            return None
        try:
            state = await gateway.payment_intent(payment_intent_id)
        except StripeObjectMissing:
            await repository.mark_event_processed(
                session, event.id, note="Stripe no longer knows this PaymentIntent"
            )
            return None
        payment = await repository.payment_by_intent(session, payment_intent_id)
        if payment is None:
            try:
                payment = await recovery.recreate_payment(session, state)
            except recovery.NotRecoverable as why:
                await repository.mark_event_processed(
                    session, event.id, note=f"{NO_PAYMENT}: {why}"[:500]
                )
                return None
        await apply_intent_state(
            session,
            payment_id=payment.id,
            state=state,
            dispute_seen=event.type.startswith("charge.dispute."),
        )
        if event.payment_intent_id is None:
            event.payment_intent_id = payment.stripe_payment_intent_id
            session.add(event)
        await repository.mark_event_processed(session, event.id)
        return payment.id


REREAD_BATCH = 20
"""At most this many stale payments are re-read from Stripe per processor round."""


async def reread_stale_payments(services: OnrampServices, *, limit: int = REREAD_BATCH) -> int:
    """Re-read from Stripe the payments still awaiting a card ``onramp_reread_after_seconds``
    after they were made or last looked at (up to ``onramp_reread_max_age_hours`` old), least
    recently looked at first, and move each as its webhook would have: a payment made behind a
    lost webhook (or one whose events were consumed before its row existed) is delivered
    anyway. Each re-read marks the payment looked at, so an abandoned one costs one Stripe read
    per interval. Stops at the first Stripe outage. Returns how many changed status."""
    settings = services.settings
    now = utc_now()
    async with services.db.session() as session:
        stale = await repository.stale_awaiting_payments(
            session,
            quiet_since=now - timedelta(seconds=settings.onramp_reread_after_seconds),
            made_after=now - timedelta(hours=settings.onramp_reread_max_age_hours),
            limit=limit,
        )
    if not stale:
        return 0
    gateway = require_gateway(services.stripe)
    moved = 0
    for payment_id, payment_intent_id in stale:
        try:
            state: IntentState | None = await gateway.payment_intent(payment_intent_id)
        except StripeObjectMissing:
            logger.warning(
                "onramp payment %s: Stripe does not know %s", payment_id, payment_intent_id
            )
            state = None
        except PaymentProviderUnavailable:
            return moved  # said by the gateway; the next round tries again
        async with services.db.session() as session:
            if state is None:
                await repository.touch_payment(session, payment_id)
            elif await apply_intent_state(session, payment_id=payment_id, state=state):
                moved += 1
    return moved


def _charge_of(event: StripeEvent) -> str | None:
    obj = event_object(event.payload)
    if obj.get("object") == "charge":
        return obj.get("id")
    charge = obj.get("charge")
    if isinstance(charge, dict):
        return charge.get("id")
    return charge if isinstance(charge, str) else None


# -- the payment state machine -------------------------------------------------------------------


@dataclass(frozen=True)
class _MoneyBack:
    """What went back on a payment, merged from our row and a read of Stripe."""

    refunded: int  # given back and not failed
    failed: int  # refunded, then failed
    newly_failed: bool  # more failed than the row knew
    disputed: bool

    @property
    def any(self) -> bool:
        return self.refunded > 0 or self.disputed


async def apply_intent_state(
    session: AsyncSession, *, payment_id: str, state: IntentState, dispute_seen: bool = False
) -> str | None:
    """Move the payment to what Stripe says now (see docs/onramp.md). Returns the new status
    when it changed."""
    payment = await repository.lock_payment(session, payment_id)
    if payment is None:
        return None
    money = await _money_back(session, payment=payment, state=state, dispute_seen=dispute_seen)
    changes: dict[str, object] = {
        "refunded_amount": money.refunded,
        "refund_failed_amount": money.failed,
        "disputed": money.disputed,
    }
    status = PaymentStatus(payment.status)
    failure = _RefundFailure(
        amount=money.failed, currency=payment.currency, reason=state.refund_failure_reason
    )
    new_status = _next_status(payment, state=state, money=money, failure=failure, changes=changes)
    if new_status != status:
        changes["status"] = new_status.value
    # Said before the update, which may refresh ``payment`` in the session.
    outdated_resolution = _reopen_outdated_resolution(
        payment, money=money, status=new_status, changes=changes
    )
    moved = await repository.move_payment(
        session, payment_id=payment.id, from_statuses=(status.value,), values=changes
    )
    if moved and outdated_resolution is not None:
        logger.warning("%s", outdated_resolution)
    if moved and new_status == PaymentStatus.REFUND_FAILED and money.newly_failed:
        logger.error(
            "onramp payment %s (%s): %s; nothing was delivered, and the money is back in the "
            "platform's Stripe balance: return it to the customer another way (%s)",
            payment.id,
            payment.stripe_payment_intent_id,
            failure.summary(),
            new_status.value,
        )
    return new_status.value if moved and new_status != status else None


async def _money_back(
    session: AsyncSession, *, payment: OnrampPayment, state: IntentState, dispute_seen: bool
) -> _MoneyBack:
    """A stale read (two processors, or an event's re-read racing a refund's failure) never
    undoes what a fresher one saw: every refund Stripe ever accepted (given back + failed) only
    grows, and so does what failed (a failed refund stays failed); what went back is the
    difference."""
    accepted = max(
        payment.refunded_amount + payment.refund_failed_amount,
        state.amount_refunded + state.amount_refund_failed,
    )
    failed = max(payment.refund_failed_amount, state.amount_refund_failed)
    disputed = (
        payment.disputed
        or state.disputed
        or dispute_seen
        or await repository.dispute_recorded(session, payment.stripe_payment_intent_id)
    )
    return _MoneyBack(
        refunded=accepted - failed,
        failed=failed,
        newly_failed=failed > payment.refund_failed_amount,
        disputed=disputed,
    )


def _next_status(
    payment: OnrampPayment,
    *,
    state: IntentState,
    money: _MoneyBack,
    failure: _RefundFailure,
    changes: dict[str, object],
) -> PaymentStatus:
    """The payment's status after ``state``; what else changes is added to ``changes``."""
    status = PaymentStatus(payment.status)
    charged = state.amount if state.succeeded else payment.fiat_amount
    if status in NOT_SENT_MONEY_BACK:
        return _nothing_sent(
            payment, status=status, money=money, charged=charged, failure=failure, changes=changes
        )
    if status in DELIVERY_STARTED:
        _flag_clawback(payment, money=money, failure=failure, changes=changes)
        return status
    if status in NEVER_DELIVERED:
        return status
    if state.succeeded and (
        state.amount != payment.fiat_amount or state.currency != payment.currency
    ):
        changes["error"] = "Stripe charged an amount other than the quote: not delivered"
        return PaymentStatus.DELIVERY_FAILED
    if status == PaymentStatus.PAID or (status in AWAITING_PAYMENT and state.succeeded):
        if money.failed and money.refunded < charged:
            # Given back before the delivery (as REFUNDED would be), and the refund failed.
            changes["error"] = failure.error(cause=None)
            return PaymentStatus.REFUND_FAILED
        if money.any:
            return PaymentStatus.DISPUTED if money.disputed else PaymentStatus.REFUNDED
        if status != PaymentStatus.PAID:
            changes["paid_at"] = utc_now()
            changes["error"] = None
            return PaymentStatus.PAID
        return status
    if state.status == "canceled":
        return PaymentStatus.CANCELED
    if state.status == "requires_payment_method" and state.last_payment_error:
        changes["error"] = state.last_payment_error[:500]
        return PaymentStatus.PAYMENT_FAILED
    return status


def _nothing_sent(
    payment: OnrampPayment,
    *,
    status: PaymentStatus,
    money: _MoneyBack,
    charged: int,
    failure: _RefundFailure,
    changes: dict[str, object],
) -> PaymentStatus:
    """Nothing was sent: the whole amount going back closes the payment (a clawback flag set
    while the delivery was in flight is void). A refund that failed leaves the customer with
    neither the tokens nor the money: an operator's. A partial refund or a dispute (an inquiry
    may end either way) leaves a DELIVERY_FAILED one for the rest of the refund or for an
    operator, and a REFUNDED one (an operator gave part back before the delivery) as it is."""
    if money.refunded >= charged:
        changes["clawback_required"] = False
        if status == PaymentStatus.REFUND_FAILED:
            changes["error"] = _cause_of(payment.error)
        return PaymentStatus.REFUNDED
    if money.failed and (money.newly_failed or status == PaymentStatus.DELIVERY_FAILED):
        changes["error"] = failure.error(cause=_cause_of(payment.error))
        return PaymentStatus.REFUND_FAILED
    return status


def _flag_clawback(
    payment: OnrampPayment,
    *,
    money: _MoneyBack,
    failure: _RefundFailure,
    changes: dict[str, object],
) -> None:
    """The tokens were sent (or are on their way): money back means a clawback, and a refund
    that failed took back nothing, so only what did go back (or a dispute) keeps it."""
    if money.any != payment.clawback_required:
        changes["clawback_required"] = money.any
        if money.any:
            logger.warning(
                "onramp payment %s (%s) was %s after its tokens were sent: flagged for clawback",
                payment.id,
                payment.stripe_payment_intent_id,
                "disputed" if money.disputed else "refunded",
            )
    if money.newly_failed:
        logger.warning(
            "onramp payment %s (%s): %s after its tokens were sent; %s",
            payment.id,
            payment.stripe_payment_intent_id,
            failure.summary(),
            f"still flagged for clawback ({money.refunded} back, disputed: {money.disputed})"
            if money.any
            else "no money went back, so no clawback is due (the customer keeps the tokens)",
        )


def _reopen_outdated_resolution(
    payment: OnrampPayment,
    *,
    money: _MoneyBack,
    status: PaymentStatus,
    changes: dict[str, object],
) -> str | None:
    """An operator's resolution covers the money movements it was made on: any other one (a
    stale read changes nothing, so this is new) clears it when the payment still needs an
    operator (added to ``changes``). Returns the log line, or ``None`` when nothing moved."""
    if payment.operator_resolved_at is None or (
        money.refunded == payment.refunded_amount
        and money.failed == payment.refund_failed_amount
        and money.disputed == payment.disputed
    ):
        return None
    case_after = operator_case(
        status=status.value,
        clawback_required=bool(changes.get("clawback_required", payment.clawback_required)),
    )
    if case_after is not None:
        changes.update(operator_resolved_at=None, operator_resolved_by=None, operator_note=None)
    return describe_outdated_resolution(
        payment,
        refunded=money.refunded,
        failed=money.failed,
        disputed=money.disputed,
        status=status,
        case_after=case_after,
    )


REFUND_FAILED_NOTE = "the refund failed"


@dataclass(frozen=True)
class _RefundFailure:
    amount: int  # every failed refund of the payment, in the currency's minor unit
    currency: str
    reason: str | None  # Stripe's failure_reason of the latest one

    def summary(self) -> str:
        return (
            f"{format_units(self.amount, FIAT_DECIMALS)} {self.currency.upper()} refunded, then "
            f"the refund failed ({self.reason or 'unknown'})"
        )

    def error(self, *, cause: str | None) -> str:
        """The payment's ``error``: the failure first (what the customer needs to know now),
        then why nothing was sent."""
        text = (
            f"{REFUND_FAILED_NOTE} ({self.reason or 'unknown'}): "
            f"{format_units(self.amount, FIAT_DECIMALS)} {self.currency.upper()} could not be "
            f"returned to the card and will be returned another way"
        )
        return (f"{text}; {cause}" if cause else text)[:500]


def _cause_of(error: str | None) -> str | None:
    """A REFUND_FAILED payment's ``error`` without the refund's failure: why nothing was sent."""
    if error is None or not error.startswith(f"{REFUND_FAILED_NOTE} ("):
        return error
    _failure, separator, cause = error.partition("; ")
    return cause if separator else None
