"""Tables of the card onramp: quotes, payments (one per Stripe PaymentIntent) and the Stripe
events received, each stored once. Fiat amounts are integers in the currency's minor unit
(cents); token amounts are base-unit integers (``TokenAmount``)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.db import TokenAmount, UTCDateTime, new_id, utc_now


def _timestamp(nullable: bool = False) -> Column:  # type: ignore[type-arg]
    return Column(UTCDateTime(), nullable=nullable)


class PaymentPurpose(StrEnum):
    PURCHASE = "PURCHASE"  # createOnrampPayment: tokens for the wallet
    ENROLLMENT_FEE = "ENROLLMENT_FEE"  # enroll(paymentMethod: CARD): OVPP for a connection fee


class PaymentStatus(StrEnum):
    """REQUIRES_PAYMENT → PAID → DELIVERING → DELIVERED, or PAYMENT_FAILED (the customer may
    try again), CANCELED, DELIVERY_FAILED; REFUNDED / DISPUTED when the money went back before
    any token was sent (then nothing is ever sent). DELIVERY_FAILED (nothing was sent) lasts
    until the processor's refund goes through: then REFUNDED, with the failure in ``error``.
    REFUND_FAILED: nothing was sent and a refund Stripe had accepted failed afterwards (the card
    was closed, lost or stolen), so the customer has neither the tokens nor the money, which is
    back in the platform's Stripe balance. Nothing automatic retries it (a refund goes only to
    the card that paid, and that card refused): an operator returns the money another way. It
    becomes REFUNDED if a later refund gives the whole charge back after all."""

    REQUIRES_PAYMENT = "REQUIRES_PAYMENT"
    PAYMENT_FAILED = "PAYMENT_FAILED"
    CANCELED = "CANCELED"
    PAID = "PAID"
    DELIVERING = "DELIVERING"
    DELIVERED = "DELIVERED"
    DELIVERY_FAILED = "DELIVERY_FAILED"
    REFUNDED = "REFUNDED"
    DISPUTED = "DISPUTED"
    REFUND_FAILED = "REFUND_FAILED"


AWAITING_PAYMENT = (PaymentStatus.REQUIRES_PAYMENT, PaymentStatus.PAYMENT_FAILED)
DELIVERY_STARTED = (
    PaymentStatus.DELIVERING,
    PaymentStatus.DELIVERED,
    PaymentStatus.DELIVERY_FAILED,
)
NEVER_DELIVERED = (
    PaymentStatus.CANCELED,
    PaymentStatus.REFUNDED,
    PaymentStatus.DISPUTED,
    PaymentStatus.REFUND_FAILED,
)
NOT_SENT_MONEY_BACK = (
    PaymentStatus.DELIVERY_FAILED,
    PaymentStatus.REFUNDED,
    PaymentStatus.REFUND_FAILED,
)
"""Nothing was sent and the money was, or is to be, given back: a refund that fails moves
them (to REFUND_FAILED), and a refund of the whole charge closes them (REFUNDED)."""

OPERATOR_NOTE_MAX_LENGTH = 500
OPERATOR_NAME_MAX_LENGTH = 100


class OperatorCase(StrEnum):
    """Why a card payment waits for an operator (README: card onramp, reconciliation)."""

    CLAWBACK = "clawback"  # money went back after delivery: claw the tokens back or write off
    REFUND_FAILED = "refund failed"  # nothing delivered, refund failed: return the money


def operator_case(*, status: str, clawback_required: bool) -> OperatorCase | None:
    """The case a payment in this state needs an operator for, or ``None``."""
    if status == PaymentStatus.REFUND_FAILED:
        return OperatorCase.REFUND_FAILED
    if clawback_required:
        return OperatorCase.CLAWBACK
    return None


class OnrampQuote(SQLModel, table=True):
    """A price offered to one wallet: ``fiat_amount`` (fee included) buys ``token_amount``."""

    __tablename__ = "onramp_quotes"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    wallet_id: str = Field(foreign_key="wallets.id", max_length=36, index=True)
    token: str = Field(max_length=16)
    token_amount: int = Field(sa_column=Column(TokenAmount, nullable=False))
    fiat_amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    fee_amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    currency: str = Field(max_length=3)
    price: str = Field(max_length=40, description="Fiat per whole token, before the fee.")
    expires_at: datetime = Field(sa_column=_timestamp())
    created_at: datetime = Field(default_factory=utc_now, sa_column=_timestamp())


class OnrampPayment(SQLModel, table=True):
    """One card payment (a Stripe PaymentIntent) and the delivery of what it bought.

    At most one delivery per PaymentIntent: the delivery is a relayed transfer from the
    treasury wallet whose idempotency key is derived from the PaymentIntent id, unique per
    wallet in ``relay_transactions``."""

    __tablename__ = "onramp_payments"
    __table_args__ = (
        UniqueConstraint("customer_id", "idempotency_key", name="uq_onramp_payment_key"),
        Index("ix_onramp_payments_status", "status"),
        Index("ix_onramp_payments_customer_created", "customer_id", "created_at"),
        # Payments awaiting an operator's clawback decision, counted by /metrics.
        Index("ix_onramp_payments_clawback", "clawback_required"),
        # A wallet's card purchases still held, read by every quote and transfer.
        Index("ix_onramp_payments_wallet_delivered", "wallet_id", "delivered_at"),
    )

    id: str = Field(primary_key=True, max_length=36)
    customer_id: str = Field(foreign_key="customers.id", max_length=36)
    wallet_id: str = Field(foreign_key="wallets.id", max_length=36)
    wallet_address: str = Field(max_length=42)
    idempotency_key: str = Field(max_length=255)
    request_fingerprint: str = Field(max_length=64)
    purpose: str = Field(default=PaymentPurpose.PURCHASE, max_length=16)
    enrollment_id: str | None = Field(
        default=None, foreign_key="enrollments.id", max_length=36, index=True
    )
    quote_id: str = Field(foreign_key="onramp_quotes.id", max_length=36, unique=True)
    token: str = Field(max_length=16)
    token_amount: int = Field(sa_column=Column(TokenAmount, nullable=False))
    fiat_amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    fee_amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    currency: str = Field(max_length=3)
    stripe_payment_intent_id: str = Field(max_length=255, unique=True)
    status: str = Field(default=PaymentStatus.REQUIRES_PAYMENT, max_length=16)
    delivery_transaction_id: str | None = Field(
        default=None, foreign_key="relay_transactions.id", max_length=36
    )
    refunded_amount: int = Field(
        default=0,
        sa_column=Column(BigInteger, nullable=False, default=0),
        description="Given back, or on its way back, to the customer: refunds that did not fail.",
    )
    refund_failed_amount: int = Field(
        default=0,
        sa_column=Column(BigInteger, nullable=False, default=0, server_default="0"),
        description="Refunds Stripe accepted that failed or were canceled afterwards: that money "
        "stayed in the platform's Stripe balance. Never decreases (a failed refund stays failed), "
        "so a stale read of Stripe cannot bring a failed refund back.",
    )
    disputed: bool = False
    clawback_required: bool = Field(
        default=False,
        description="Refunded or disputed after the tokens were sent: operations must recover "
        "them (see README, card onramp).",
    )
    error: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utc_now, sa_column=_timestamp())
    updated_at: datetime = Field(default_factory=utc_now, sa_column=_timestamp())
    paid_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    delivered_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    # An operator's resolution of the payment's case (``operator_case``), beside the facts above,
    # which it never changes: set by ``ovpp-wallet onramp resolve``; cleared when money moves
    # again while the payment still needs an operator (``events.apply_intent_state``).
    operator_resolved_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    operator_resolved_by: str | None = Field(default=None, max_length=OPERATOR_NAME_MAX_LENGTH)
    operator_note: str | None = Field(default=None, max_length=OPERATOR_NOTE_MAX_LENGTH)


class StripeEvent(SQLModel, table=True):
    """A verified Stripe webhook event, stored once (unique ``stripe_event_id``) and committed
    before anything acts on it; ``processed_at`` is set by the transaction that acted on it."""

    __tablename__ = "stripe_events"
    __table_args__ = (Index("ix_stripe_events_unprocessed", "processed_at", "received_at"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    stripe_event_id: str = Field(max_length=255, unique=True)
    type: str = Field(max_length=100)
    object_id: str | None = Field(default=None, max_length=255)
    payment_intent_id: str | None = Field(default=None, max_length=255, index=True)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    stripe_created: int = Field(sa_column=Column(BigInteger, nullable=False))
    received_at: datetime = Field(default_factory=utc_now, sa_column=_timestamp())
    processed_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    attempts: int = 0
    next_attempt_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    last_error: str | None = Field(default=None, max_length=500)
