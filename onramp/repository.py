"""SQL of the card onramp, and nothing else. State changes are guarded ``UPDATE … WHERE
status = …`` statements: the row count says whether this caller made the change, so two
processors (or a webhook and a retry) can never both make it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from core.db import insert_if_absent, utc_now
from identity.models import Customer
from onramp.models import AWAITING_PAYMENT, OnrampPayment, PaymentStatus, StripeEvent
from relayer.models import JobKind, RelayTransaction


async def payment_by_key(
    session: AsyncSession, *, customer_id: str, idempotency_key: str
) -> OnrampPayment | None:
    statement = select(OnrampPayment).where(
        OnrampPayment.customer_id == customer_id,
        OnrampPayment.idempotency_key == idempotency_key,
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def payment_by_intent(session: AsyncSession, payment_intent_id: str) -> OnrampPayment | None:
    statement = select(OnrampPayment).where(
        OnrampPayment.stripe_payment_intent_id == payment_intent_id
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def payment_id_by_reference(session: AsyncSession, reference: str) -> str | None:
    """The id of the payment whose id, or whose PaymentIntent id, is ``reference``."""
    statement = select(OnrampPayment.id).where(
        or_(OnrampPayment.id == reference, OnrampPayment.stripe_payment_intent_id == reference)
    )
    return (await session.execute(statement)).scalars().first()


async def payment_of_enrollment(session: AsyncSession, enrollment_id: str) -> OnrampPayment | None:
    statement = select(OnrampPayment).where(OnrampPayment.enrollment_id == enrollment_id)
    return (await session.execute(statement)).scalar_one_or_none()


async def quote_is_used(session: AsyncSession, quote_id: str) -> bool:
    statement = select(OnrampPayment.id).where(OnrampPayment.quote_id == quote_id)
    return (await session.execute(statement)).first() is not None


async def insert_payment_if_absent(session: AsyncSession, values: dict[str, Any]) -> bool:
    return await insert_if_absent(session, OnrampPayment.__table__, values)


async def lock_payment(session: AsyncSession, payment_id: str) -> OnrampPayment | None:
    """The payment, locked until commit: the first write of the transaction (a row lock in
    PostgreSQL, the write lock in SQLite), then a fresh read."""
    result = await session.execute(
        update(OnrampPayment).where(OnrampPayment.id == payment_id).values(updated_at=utc_now())
    )
    if not result.rowcount:
        return None
    row = await session.get(OnrampPayment, payment_id, populate_existing=True)
    return row


async def move_payment(
    session: AsyncSession,
    *,
    payment_id: str,
    from_statuses: tuple[str, ...],
    values: dict[str, Any],
) -> bool:
    """Change the payment only if it is still in one of ``from_statuses``."""
    result = await session.execute(
        update(OnrampPayment)
        .where(OnrampPayment.id == payment_id, OnrampPayment.status.in_(from_statuses))
        .values(updated_at=utc_now(), **values)
    )
    return bool(result.rowcount)


async def resolve_operator_case(
    session: AsyncSession,
    *,
    payment_id: str,
    resolved_at: datetime,
    resolved_by: str,
    note: str,
) -> bool:
    """Record an operator's resolution only if the payment needs an operator (REFUND_FAILED,
    or flagged for clawback) and is not resolved yet: the row count says whether this call
    recorded it. Nothing else of the payment changes."""
    result = await session.execute(
        update(OnrampPayment)
        .where(
            OnrampPayment.id == payment_id,
            OnrampPayment.operator_resolved_at.is_(None),
            or_(
                OnrampPayment.status == PaymentStatus.REFUND_FAILED.value,
                OnrampPayment.clawback_required.is_(True),
            ),
        )
        .values(
            updated_at=resolved_at,
            operator_resolved_at=resolved_at,
            operator_resolved_by=resolved_by,
            operator_note=note,
        )
    )
    return bool(result.rowcount)


async def payments_of_customer(
    session: AsyncSession, *, customer_id: str, limit: int
) -> list[tuple[OnrampPayment, RelayTransaction | None]]:
    statement = (
        select(OnrampPayment, RelayTransaction)
        .outerjoin(RelayTransaction, RelayTransaction.id == OnrampPayment.delivery_transaction_id)
        .where(OnrampPayment.customer_id == customer_id)
        .order_by(OnrampPayment.created_at.desc(), OnrampPayment.id.desc())
        .limit(limit)
    )
    return [(payment, job) for payment, job in (await session.execute(statement)).all()]


async def payment_ids_with_status(
    session: AsyncSession, status: str, *, limit: int = 100
) -> list[str]:
    statement = (
        select(OnrampPayment.id)
        .where(OnrampPayment.status == status)
        .order_by(OnrampPayment.updated_at)
        .limit(limit)
    )
    return list((await session.execute(statement)).scalars())


async def deliveries_to_settle(
    session: AsyncSession, *, final_statuses: tuple[str, ...], limit: int = 200
) -> list[tuple[str, str, datetime | None, str | None]]:
    """(payment id, job status, confirmed at, job error) of DELIVERING payments whose delivery
    transaction reached a final status."""
    statement = (
        select(
            OnrampPayment.id,
            RelayTransaction.status,
            RelayTransaction.confirmed_at,
            RelayTransaction.error,
        )
        .join(RelayTransaction, RelayTransaction.id == OnrampPayment.delivery_transaction_id)
        .where(
            OnrampPayment.status == PaymentStatus.DELIVERING,
            RelayTransaction.status.in_(final_statuses),
        )
        .limit(limit)
    )
    return [tuple(row) for row in (await session.execute(statement)).all()]  # type: ignore[misc]


# -- stored Stripe events ------------------------------------------------------------------------


async def insert_event_if_absent(connection: AsyncConnection, values: dict[str, Any]) -> bool:
    """One statement, deduplicated by the unique ``stripe_event_id``."""
    return await insert_if_absent(connection, StripeEvent.__table__, values)


async def events_to_process(session: AsyncSession, *, limit: int = 50) -> list[str]:
    now = utc_now()
    statement = (
        select(StripeEvent.id)
        .where(
            StripeEvent.processed_at.is_(None),
            or_(StripeEvent.next_attempt_at.is_(None), StripeEvent.next_attempt_at <= now),
        )
        .order_by(StripeEvent.received_at, StripeEvent.id)
        .limit(limit)
    )
    return list((await session.execute(statement)).scalars())


async def mark_event_processed(
    session: AsyncSession, event_id: str, *, note: str | None = None
) -> bool:
    result = await session.execute(
        update(StripeEvent)
        .where(StripeEvent.id == event_id, StripeEvent.processed_at.is_(None))
        .values(processed_at=utc_now(), last_error=note)
    )
    return bool(result.rowcount)


async def record_event_failure(
    session: AsyncSession, event_id: str, *, error: str, retry_at: datetime
) -> None:
    await session.execute(
        update(StripeEvent)
        .where(StripeEvent.id == event_id, StripeEvent.processed_at.is_(None))
        .values(attempts=StripeEvent.attempts + 1, last_error=error[:500], next_attempt_at=retry_at)
    )


async def dispute_recorded(session: AsyncSession, payment_intent_id: str) -> bool:
    statement = select(func.count()).where(
        StripeEvent.payment_intent_id == payment_intent_id,
        StripeEvent.type.like("charge.dispute.%"),
    )
    return bool((await session.execute(statement)).scalar_one())


# -- deliveries ----------------------------------------------------------------------------------


async def delivery_jobs(
    session: AsyncSession, *, wallet_id: str, idempotency_key: str
) -> list[RelayTransaction]:
    statement = select(RelayTransaction).where(
        RelayTransaction.wallet_id == wallet_id,
        RelayTransaction.kind == JobKind.ONRAMP_DELIVERY,
        RelayTransaction.idempotency_key == idempotency_key,
    )
    return list((await session.execute(statement)).scalars())


async def all_payments(
    session: AsyncSession, *, since: datetime | None = None
) -> list[OnrampPayment]:
    statement = select(OnrampPayment)
    if since is not None:
        statement = statement.where(OnrampPayment.created_at >= since)
    return list((await session.execute(statement)).scalars())


# -- payments whose news was lost ----------------------------------------------------------------


async def enrollment_exists(session: AsyncSession, enrollment_id: str) -> bool:
    """Whether the enrollment a payment would name exists, read in the table ``enrollment_id``
    refers to (the programs own it; the onramp knows it only through that foreign key)."""
    (foreign_key,) = OnrampPayment.__table__.c.enrollment_id.foreign_keys  # type: ignore[attr-defined]
    target = foreign_key.column
    statement = select(target).where(target == enrollment_id)
    return (await session.execute(statement)).first() is not None


async def stale_awaiting_payments(
    session: AsyncSession, *, quiet_since: datetime, made_after: datetime, limit: int
) -> list[tuple[str, str]]:
    """(payment id, PaymentIntent id) of payments still awaiting a card, made after
    ``made_after`` and neither made nor looked at (``updated_at``) since ``quiet_since``, least
    recently looked at first."""
    statement = (
        select(OnrampPayment.id, OnrampPayment.stripe_payment_intent_id)
        .where(
            OnrampPayment.status.in_([status.value for status in AWAITING_PAYMENT]),
            OnrampPayment.created_at <= quiet_since,
            OnrampPayment.created_at >= made_after,
            OnrampPayment.updated_at <= quiet_since,
        )
        .order_by(OnrampPayment.updated_at, OnrampPayment.id)
        .limit(limit)
    )
    return [(row[0], row[1]) for row in (await session.execute(statement)).all()]


async def touch_payment(session: AsyncSession, payment_id: str) -> None:
    """Mark the payment looked at now (``updated_at``), nothing else."""
    await session.execute(
        update(OnrampPayment).where(OnrampPayment.id == payment_id).values(updated_at=utc_now())
    )


# -- the hold and the limits (onramp/hold.py, onramp/limits.py) ----------------------------------


_PAYMENTS = OnrampPayment.__table__
# Built once, of the table (SQLAlchemy's Core path): every quote and transfer runs it.
_HELD_PURCHASES = select(
    _PAYMENTS.c.token, _PAYMENTS.c.token_amount, _PAYMENTS.c.delivered_at
).where(
    _PAYMENTS.c.customer_id == bindparam("customer_id"),
    _PAYMENTS.c.wallet_id == bindparam("wallet_id"),
    or_(
        _PAYMENTS.c.delivered_at >= bindparam("delivered_since"),
        _PAYMENTS.c.status == PaymentStatus.DELIVERING.value,
    ),
)


async def held_purchases(
    session: AsyncSession, *, customer_id: str, wallet_id: str, delivered_since: datetime
) -> list[tuple[str, int, datetime | None]]:
    """(token, token amount, delivered at) of the card payments delivered to the wallet since
    ``delivered_since``, and of those being delivered (``delivered_at`` still empty): whatever
    their status since, a refund or dispute after delivery does not free the tokens."""
    parameters = {
        "customer_id": customer_id,
        "wallet_id": wallet_id,
        "delivered_since": delivered_since,
    }
    rows = (await session.execute(_HELD_PURCHASES, parameters)).all()
    return [(row[0], int(row[1]), row[2]) for row in rows]


async def lock_customer_for_card_payment(session: AsyncSession, customer_id: str) -> None:
    """The customer's card payments, one at a time until commit: a no-op UPDATE of their
    customer row (a row lock in PostgreSQL that foreign keys do not wait for, the write lock
    in SQLite). Taken before the limits are read, held through the PaymentIntent's creation
    until the payment's row is committed."""
    await session.execute(
        update(Customer).where(Customer.id == customer_id).values(email=Customer.email)
    )


async def card_totals(
    session: AsyncSession,
    *,
    customer_id: str,
    statuses: tuple[str, ...],
    day_since: datetime,
    month_since: datetime,
) -> tuple[int, int]:
    """What the customer's card payments in ``statuses`` made since ``day_since`` and since
    ``month_since`` add up to, in fiat minor units (one statement, on the customer index)."""
    recent = case((OnrampPayment.created_at >= day_since, OnrampPayment.fiat_amount), else_=0)
    statement = select(
        func.coalesce(func.sum(recent), 0), func.coalesce(func.sum(OnrampPayment.fiat_amount), 0)
    ).where(
        OnrampPayment.customer_id == customer_id,
        OnrampPayment.created_at >= month_since,
        OnrampPayment.status.in_(statuses),
    )
    day, month = (await session.execute(statement)).one()
    return int(day), int(month)
