"""Operators' resolutions: an operator records how a payment's case (a clawback to decide, a
refund that failed) was settled, beside the facts, which it never changes."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from chain.tokens import format_units
from core.db import utc_now
from core.errors import InvalidInput
from onramp import repository
from onramp.errors import AlreadyResolved, NothingToResolve, OnrampPaymentNotFound
from onramp.models import (
    OPERATOR_NAME_MAX_LENGTH,
    OPERATOR_NOTE_MAX_LENGTH,
    OnrampPayment,
    OperatorCase,
    PaymentStatus,
    operator_case,
)
from onramp.pricing import FIAT_DECIMALS

logger = logging.getLogger(__name__)


def describe_resolution(payment: OnrampPayment) -> str:
    """An operator's resolution in one line: when, who, the note."""
    resolved_at = payment.operator_resolved_at
    when = f"{resolved_at:%Y-%m-%d %H:%M:%S} UTC" if resolved_at is not None else "unresolved"
    return f"resolved {when} by {payment.operator_resolved_by}: {payment.operator_note}"


@dataclass(frozen=True)
class OperatorResolution:
    """An operator's resolution as recorded, with the facts it was recorded beside."""

    payment_id: str
    payment_intent_id: str
    case: OperatorCase
    status: str
    refunded: str  # "10.30 USD": what went back
    refund_failed: str  # what was refunded and then failed
    disputed: bool
    resolved_at: datetime
    resolved_by: str
    note: str


def _operator_text(value: str, *, field: str, max_length: int, missing: str) -> str:
    """``value`` on one line (newlines and runs of spaces become one space), non-empty, at most
    ``max_length`` characters, with no control character: it is printed and logged as is."""
    text = " ".join(value.split())
    if not text:
        raise InvalidInput(missing, field=field)
    if len(text) > max_length:
        raise InvalidInput(
            f"the {field} is {len(text)} characters long; at most {max_length}", field=field
        )
    if not text.isprintable():
        raise InvalidInput(f"the {field} holds a control character", field=field)
    return text


async def resolve_operator_case(
    session: AsyncSession, *, payment_reference: str, note: str, operator: str
) -> OperatorResolution:
    """Record that an operator settled the case a payment waits for (``operator_case``: a
    clawback to decide, or a refund that failed): who, when and how, beside the facts, which
    stay as they are (status, clawback flag, amounts). Reconcile and /metrics stop counting it.
    Refused for an unknown payment, one that needs no operator, and one resolved already (its
    resolution is in the message); money moving again reopens it (``apply_intent_state``).
    ``payment_reference``: the payment's id or its PaymentIntent id."""
    note = _operator_text(
        note,
        field="note",
        max_length=OPERATOR_NOTE_MAX_LENGTH,
        missing="the note is empty: say how the case was settled",
    )
    operator = _operator_text(
        operator,
        field="operator",
        max_length=OPERATOR_NAME_MAX_LENGTH,
        missing="say who settled the case (--operator)",
    )
    reference = payment_reference.strip()
    payment_id = await repository.payment_id_by_reference(session, reference) if reference else None
    if payment_id is None:
        raise OnrampPaymentNotFound(f"no card payment has the id or PaymentIntent id {reference!r}")
    recorded = await repository.resolve_operator_case(
        session, payment_id=payment_id, resolved_at=utc_now(), resolved_by=operator, note=note
    )
    payment = await session.get(OnrampPayment, payment_id, populate_existing=True)
    assert payment is not None  # found above, and payments are never deleted
    named = f"payment {payment.id} ({payment.stripe_payment_intent_id})"
    case = operator_case(status=payment.status, clawback_required=payment.clawback_required)
    if not recorded and case is None:
        earlier = (
            f"; an operator had {describe_resolution(payment)}"
            if payment.operator_resolved_at is not None
            else ""
        )
        raise NothingToResolve(
            f"{named} needs no operator: it is {payment.status}, neither flagged for clawback "
            f"nor REFUND_FAILED{earlier}"
        )
    if not recorded:
        raise AlreadyResolved(
            f"{named} was {describe_resolution(payment)}; nothing recorded (money moving again "
            f"would reopen it)"
        )
    assert case is not None and payment.operator_resolved_at is not None
    logger.info("onramp payment %s: %s %s", named, case, describe_resolution(payment))
    return OperatorResolution(
        payment_id=payment.id,
        payment_intent_id=payment.stripe_payment_intent_id,
        case=case,
        status=payment.status,
        refunded=_money(payment.refunded_amount, payment.currency),
        refund_failed=_money(payment.refund_failed_amount, payment.currency),
        disputed=payment.disputed,
        resolved_at=payment.operator_resolved_at,
        resolved_by=operator,
        note=note,
    )


def _money(amount: int, currency: str) -> str:
    return f"{format_units(amount, FIAT_DECIMALS)} {currency.upper()}"


def describe_outdated_resolution(
    payment: OnrampPayment,
    *,
    refunded: int,
    failed: int,
    disputed: bool,
    status: PaymentStatus,
    case_after: OperatorCase | None,
) -> str:
    """The log line of money that moved on a payment an operator had resolved (``payment``: as
    it was before). It keeps a resolution that is cleared, and says why a kept one may no
    longer fit."""
    case_before = operator_case(status=payment.status, clawback_required=payment.clawback_required)
    moved = (
        f"onramp payment {payment.id} ({payment.stripe_payment_intent_id}): money moved after "
        f"an operator resolved its {case_before or 'case'} ({describe_resolution(payment)}): "
        f"now {_money(refunded, payment.currency)} back, {_money(failed, payment.currency)} of "
        f"refunds failed, disputed: {disputed}"
    )
    if case_after is not None:
        return (
            f"{moved}; the resolution is cleared and the case ({case_after}) is open again for "
            f"an operator (ovpp-wallet onramp resolve)"
        )
    return (
        f"{moved}; it is {status.value} and needs no operator now, so the resolution is kept "
        f"as the record: check that what the operator did still fits (money returned another "
        f"way may now have been returned twice; tokens clawed back for money that stayed)"
    )
