"""Ending a card-paid enrollment whose fee was never paid, so no device waits on a card
payment forever: the customer's ``unenroll`` of a FEE_PENDING enrollment ends it UNENROLLED,
and the onramp processor's follower ends one still unpaid
``OVPP_CARD_ENROLLMENT_PAYMENT_MINUTES`` after its payment was opened FAILED.

Either way the PaymentIntent is canceled at Stripe first (``onramp.cancel``), before anything
is written: a payment Stripe is processing or has taken cannot be canceled, and then nothing
of the enrollment changes (it connects once its OVPP arrives). Then the payment's row becomes
CANCELED and the enrollment ends, each by an update guarded on its status, in one
transaction. Nothing is charged and nothing is queued.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from core.db import utc_now
from onramp import repository as onramp_repository
from onramp.cancel import cancel_unpaid
from onramp.errors import PaymentProviderUnavailable, PaymentUnderWay
from onramp.models import PaymentStatus
from programs import repository
from programs.deps import ProgramServices
from programs.errors import FeePaymentUnderWay
from programs.models import Enrollment, EnrollmentStatus
from programs.notices import enrollment_changed

logger = logging.getLogger(__name__)

UNENROLLED_UNPAID = (
    "unenrolled before the fee was paid: the card payment was canceled and nothing was charged"
)
EXPIRY_BATCH = 20
"""At most this many unpaid enrollments are canceled per processor round."""


def unpaid_in_time(minutes: int) -> str:
    """The ``error`` of an enrollment canceled because its fee was not paid in time."""
    return (
        f"the card payment for the fee was not made within {minutes} minutes: it was canceled "
        "and nothing was charged; enroll again to join"
    )


async def ended_unpaid(session: AsyncSession, enrollment: Enrollment) -> bool:
    """Whether this card-paid enrollment ended before its fee was paid (its payment canceled,
    nothing ever connected): unenrolling it again answers it as it is."""
    if enrollment.payment_method != "CARD" or enrollment.relay_transaction_id is not None:
        return False
    if enrollment.status not in (EnrollmentStatus.FAILED, EnrollmentStatus.UNENROLLED):
        return False
    payment = await onramp_repository.payment_of_enrollment(session, enrollment.id)
    return payment is not None and payment.status == PaymentStatus.CANCELED


async def unenroll_unpaid(
    session: AsyncSession,
    *,
    services: ProgramServices,
    enrollment: Enrollment,
    idempotency_key: str,
) -> Enrollment:
    """``unenroll`` of a FEE_PENDING card enrollment: its payment canceled, it UNENROLLED
    (``FeePaymentUnderWay`` when the payment can no longer be canceled). Once it has ended
    unpaid, by this or by the processor, every unenroll answers it as it is."""
    if enrollment.status == EnrollmentStatus.FEE_PENDING:
        payment = await onramp_repository.payment_of_enrollment(session, enrollment.id)
        if payment is not None:
            try:
                await cancel_unpaid(
                    session, services=services, payment=payment, reason=UNENROLLED_UNPAID
                )
            except PaymentUnderWay as under_way:
                raise FeePaymentUnderWay(
                    f"{under_way.message}: the enrollment connects once the OVPP it bought "
                    "arrives; unenroll it once it is ACTIVE",
                    field="enrollmentId",
                ) from under_way
        if await repository.end_fee_pending(
            session,
            enrollment_id=enrollment.id,
            reason=UNENROLLED_UNPAID,
            status=EnrollmentStatus.UNENROLLED,
            unenroll_idempotency_key=idempotency_key,
        ):
            await enrollment_changed(session, enrollment.id)
    # Ended here, or by a concurrent step (the processor's window): as the row now says.
    ended = await session.get(Enrollment, enrollment.id, populate_existing=True)
    assert ended is not None
    return ended


async def cancel_unpaid_in_time(services: ProgramServices) -> bool:
    """The follower's step: cancel the card-paid enrollments whose fee is still unpaid
    ``card_enrollment_payment_minutes`` after its payment was opened, least recently looked at
    first. The first payment Stripe does not cancel (unreachable, or it does not know it) is
    marked looked at and ends the round: at most one failing Stripe call a round, and the
    next round starts with another payment. Returns whether any ended."""
    minutes = services.settings.card_enrollment_payment_minutes
    async with services.db.session() as session:
        enrollment_ids = await repository.unpaid_card_enrollments(
            session, opened_before=utc_now() - timedelta(minutes=minutes), limit=EXPIRY_BATCH
        )
    ended = False
    for enrollment_id in enrollment_ids:
        try:
            ended = await _cancel_one(services, enrollment_id, minutes=minutes) or ended
        except PaymentProviderUnavailable:
            return ended  # said by the gateway; the next round tries again
        except Exception:
            logger.exception("unpaid card enrollment %s was not canceled", enrollment_id)
    return ended


async def _cancel_one(services: ProgramServices, enrollment_id: str, *, minutes: int) -> bool:
    """One unpaid enrollment, in its own transaction: its payment canceled, it FAILED. A
    payment Stripe is processing or has taken is left to go through (and recorded as Stripe
    says, so one paid behind a lost webhook is delivered)."""
    reason = unpaid_in_time(minutes)
    async with services.db.session() as session:
        enrollment = await session.get(Enrollment, enrollment_id)
        if enrollment is None or enrollment.status != EnrollmentStatus.FEE_PENDING:
            return False
        payment = await onramp_repository.payment_of_enrollment(session, enrollment_id)
        if payment is None:
            return False
        try:
            await cancel_unpaid(session, services=services, payment=payment, reason=reason)
        except PaymentUnderWay:
            logger.info("card enrollment %s: its fee payment is under way", enrollment_id)
            return False
        except PaymentProviderUnavailable:
            await onramp_repository.touch_payment(session, payment.id)
            await session.commit()
            raise
        if not await repository.end_fee_pending(
            session, enrollment_id=enrollment_id, reason=reason
        ):
            return False
        await enrollment_changed(session, enrollment_id)
        return True
