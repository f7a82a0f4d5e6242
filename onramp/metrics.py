"""The card onramp's state as an operator watches it, read when metrics are scraped: plain
values, no exposition format (that is the API's)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from onramp.models import OnrampPayment, PaymentStatus, StripeEvent

WAITING_STATUSES = (
    PaymentStatus.PAID,
    PaymentStatus.DELIVERING,
    PaymentStatus.DELIVERY_FAILED,
)
"""Card payments the processor still has to act on (deliver, confirm, or refund)."""


@dataclass(frozen=True)
class OnrampState:
    waiting: dict[PaymentStatus, int]
    """Every status of ``WAITING_STATUSES``, in that order."""
    clawbacks_required: int
    refunds_failed: int
    unprocessed_events: int
    oldest_unprocessed_event_at: datetime | None


async def onramp_state(session: AsyncSession) -> OnrampState:
    payments = (
        await session.execute(
            select(OnrampPayment.status, func.count())
            .where(OnrampPayment.status.in_([s.value for s in WAITING_STATUSES]))
            .group_by(OnrampPayment.status)
        )
    ).all()
    clawbacks = (
        await session.execute(
            select(func.count()).where(
                OnrampPayment.clawback_required.is_(True),
                OnrampPayment.operator_resolved_at.is_(None),
            )
        )
    ).scalar_one()
    refunds_failed = (
        await session.execute(
            select(func.count()).where(
                OnrampPayment.status == PaymentStatus.REFUND_FAILED.value,
                OnrampPayment.operator_resolved_at.is_(None),
            )
        )
    ).scalar_one()
    unprocessed, oldest_event = (
        await session.execute(
            select(func.count(), func.min(StripeEvent.received_at)).where(
                StripeEvent.processed_at.is_(None)
            )
        )
    ).one()
    counts = dict(payments)
    return OnrampState(
        waiting={status: counts.get(status.value, 0) for status in WAITING_STATUSES},
        clawbacks_required=clawbacks,
        refunds_failed=refunds_failed,
        unprocessed_events=unprocessed,
        oldest_unprocessed_event_at=oldest_event,
    )
