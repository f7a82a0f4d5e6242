"""A PaymentIntent of ours with no payment row: the row recreated from the PaymentIntent's
metadata, so a paid card payment is delivered even if its row never reached the database.

Every PaymentIntent the onramp makes carries, in its metadata, what its row holds that Stripe
does not (``payments.create_intent``): the payment id, the customer, the wallet, the quote, the
idempotency key and the request's fingerprint. The row is committed before the client secret
is returned, so this is the second line: a crash between Stripe and the commit, or a row lost
some other way. The metadata is only trusted as far as it agrees with itself and with our rows
(the payment id derives from the customer and the key; the wallet is that customer's, at that
address; the quote, if it still exists, is that wallet's, for that purchase, and unused).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from core.db import utc_now
from onramp import repository
from onramp.models import OnrampPayment, OnrampQuote, PaymentPurpose, PaymentStatus
from onramp.payments import payment_id_for
from onramp.stripe_gateway import IntentState
from wallet.models import Wallet

logger = logging.getLogger(__name__)

REQUIRED_METADATA = (
    "ovpp_payment_id",
    "ovpp_customer_id",
    "ovpp_wallet_id",
    "ovpp_wallet",
    "ovpp_idempotency_key",
    "ovpp_request_fingerprint",
    "ovpp_quote_id",
    "ovpp_token",
    "ovpp_token_amount",
    "ovpp_fiat_amount",
    "ovpp_fee_amount",
    "ovpp_price",
    "ovpp_purpose",
)


class NotRecoverable(Exception):
    """Why no payment row can be made for a PaymentIntent (recorded on the event)."""


async def recreate_payment(session: AsyncSession, state: IntentState) -> OnrampPayment:
    """The payment row ``state``'s metadata describes, inserted (with its quote, if that is
    gone too) in ``session``; raises ``NotRecoverable`` saying why not."""
    meta = state.metadata
    if "ovpp_payment_id" not in meta:
        raise NotRecoverable("not an onramp PaymentIntent (no ovpp_payment_id in its metadata)")
    missing = [key for key in REQUIRED_METADATA if not meta.get(key)]
    if missing:
        raise NotRecoverable(f"its metadata lacks {', '.join(missing)}: see `onramp reconcile`")
    payment_id = meta["ovpp_payment_id"]
    customer_id = meta["ovpp_customer_id"]
    key = meta["ovpp_idempotency_key"]
    if payment_id_for(customer_id, key) != payment_id:
        raise NotRecoverable("its metadata does not agree with itself (payment id)")
    try:
        purpose = PaymentPurpose(meta["ovpp_purpose"])
        amounts = _Amounts(
            tokens=int(meta["ovpp_token_amount"]),
            fiat=int(meta["ovpp_fiat_amount"]),
            fee=int(meta["ovpp_fee_amount"]),
        )
    except ValueError as error:
        raise NotRecoverable(f"its metadata is malformed: {error}") from error
    wallet = await session.get(Wallet, meta["ovpp_wallet_id"])
    if wallet is None or (wallet.customer_id, wallet.address) != (customer_id, meta["ovpp_wallet"]):
        raise NotRecoverable("its metadata names a wallet that is not its customer's")
    taken = await repository.payment_by_key(session, customer_id=customer_id, idempotency_key=key)
    if taken is not None or await session.get(OnrampPayment, payment_id) is not None:
        raise NotRecoverable("its payment exists with another PaymentIntent (a lost race)")
    quote = await _quote(session, state, wallet=wallet, amounts=amounts)
    enrollment_id = meta.get("ovpp_enrollment_id") or None
    if enrollment_id and not await repository.enrollment_exists(session, enrollment_id):
        logger.warning(
            "onramp payment %s (%s): its enrollment %s is gone; the OVPP bought for its fee "
            "is delivered to the wallet instead",
            payment_id,
            state.id,
            enrollment_id,
        )
        enrollment_id = None
    now = utc_now()
    inserted = await repository.insert_payment_if_absent(
        session,
        {
            "id": payment_id,
            "customer_id": customer_id,
            "wallet_id": wallet.id,
            "wallet_address": wallet.address,
            "idempotency_key": key,
            "request_fingerprint": meta["ovpp_request_fingerprint"],
            "purpose": purpose.value,
            "enrollment_id": enrollment_id,
            "quote_id": quote.id,
            "token": quote.token,
            "token_amount": quote.token_amount,
            "fiat_amount": quote.fiat_amount,
            "fee_amount": quote.fee_amount,
            "currency": quote.currency,
            "stripe_payment_intent_id": state.id,
            "status": PaymentStatus.REQUIRES_PAYMENT.value,
            "refunded_amount": 0,
            "disputed": False,
            "clawback_required": False,
            "created_at": _created(state) or now,
            "updated_at": now,
        },
    )
    row = await repository.payment_by_intent(session, state.id)
    if not inserted or row is None:
        raise NotRecoverable("its payment could not be recreated (a concurrent insert)")
    logger.warning(
        "onramp payment %s (%s) had no row: recreated from the PaymentIntent's metadata",
        payment_id,
        state.id,
    )
    return row


@dataclass(frozen=True)
class _Amounts:
    tokens: int
    fiat: int  # what the quote charges, fee included (the PaymentIntent may say otherwise)
    fee: int


async def _quote(
    session: AsyncSession, state: IntentState, *, wallet: Wallet, amounts: _Amounts
) -> OnrampQuote:
    """The payment's quote: the stored one if it still exists (it must be the wallet's, for
    this purchase, and unused), else recreated from the metadata and the PaymentIntent."""
    meta = state.metadata
    quote = await session.get(OnrampQuote, meta["ovpp_quote_id"])
    if quote is None:
        created = _created(state) or utc_now()
        quote = OnrampQuote(
            id=meta["ovpp_quote_id"],
            wallet_id=wallet.id,
            token=meta["ovpp_token"],
            token_amount=amounts.tokens,
            fiat_amount=amounts.fiat,
            fee_amount=amounts.fee,
            currency=state.currency,
            price=meta["ovpp_price"],
            expires_at=created,
            created_at=created,
        )
        session.add(quote)
        await session.flush()
        return quote
    stored = (quote.wallet_id, quote.token, quote.token_amount, quote.fiat_amount, quote.fee_amount)
    if stored != (wallet.id, meta["ovpp_token"], amounts.tokens, amounts.fiat, amounts.fee):
        raise NotRecoverable("its metadata does not match its quote")
    if await repository.quote_is_used(session, quote.id):
        raise NotRecoverable("its quote was used by another payment")
    return quote


def _created(state: IntentState) -> datetime | None:
    return datetime.fromtimestamp(state.created, tz=UTC) if state.created else None
