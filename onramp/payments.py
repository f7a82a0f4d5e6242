"""Card payments: a Stripe PaymentIntent for a quote, made once per idempotency key, and its
replay."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from core.db import utc_now
from core.errors import InvalidInput
from core.idempotency import request_fingerprint as fingerprint_of
from core.idempotency import require_idempotency_key
from identity.service import CustomerAccount
from onramp import limits, repository
from onramp.deps import OnrampServices
from onramp.models import (
    AWAITING_PAYMENT,
    OnrampPayment,
    OnrampQuote,
    PaymentPurpose,
    PaymentStatus,
)
from onramp.quotes import QuoteRequest, price_request, require_onramp
from onramp.stripe_gateway import CreatedIntent, require_gateway
from relayer.errors import QuoteExpired
from relayer.models import RelayTransaction

_PAYMENT_NAMESPACE = uuid.UUID("6f1b0f5e-3d0a-4c41-9d52-8a6c3f3f0e11")


def payment_id_for(customer_id: str, idempotency_key: str) -> str:
    """Deterministic: a retry of the same request names the same payment, so it sends Stripe the
    same Idempotency-Key and metadata and gets the same PaymentIntent back."""
    return str(uuid.uuid5(_PAYMENT_NAMESPACE, f"{customer_id}\x1f{idempotency_key}"))


@dataclass(frozen=True)
class OpenedPayment:
    payment: OnrampPayment
    client_secret: str | None  # for the app's payment sheet, while the payment awaits a card


def _check_key(idempotency_key: str) -> None:
    require_idempotency_key(idempotency_key, limit=200)


async def create_payment(
    session: AsyncSession,
    *,
    services: OnrampServices,
    account: CustomerAccount,
    request: QuoteRequest,
    quote_id: str,
    idempotency_key: str,
) -> OpenedPayment:
    """A card PaymentIntent for a quote, or the one this idempotency key already made (the
    same key with other input is refused). The customer's card-payment lock is taken first, so
    a retry racing its original replays it rather than counting against the limits."""
    require_onramp(services)
    _check_key(idempotency_key)
    await repository.lock_customer_for_card_payment(session, account.customer.id)
    request_fingerprint = fingerprint_of(
        request.token.upper(),
        request.fiat_amount or "",
        request.token_amount or "",
        request.currency.lower(),
        quote_id,
    )
    existing = await repository.payment_by_key(
        session, customer_id=account.customer.id, idempotency_key=idempotency_key
    )
    if existing is not None:
        return await replay(services, existing, request_fingerprint=request_fingerprint)

    token, priced, _price = price_request(services, request)
    row = await session.get(OnrampQuote, quote_id) if quote_id else None
    if row is None or row.wallet_id != account.wallet.id:
        raise InvalidInput("unknown quote: ask quoteOnramp for one first", field="quoteId")
    named_amount_matches = (
        row.fiat_amount == priced.fiat_amount
        if request.fiat_amount is not None
        else row.token_amount == priced.token_amount
    )
    if row.token != token.kind.value or not named_amount_matches:
        raise InvalidInput("the quote was made for a different purchase", field="quoteId")
    if row.expires_at <= utc_now():
        raise QuoteExpired("the onramp quote has expired: ask for a new one")
    if await repository.quote_is_used(session, row.id):
        raise InvalidInput("this quote was already used by another payment", field="quoteId")

    payment_id = payment_id_for(account.customer.id, idempotency_key)
    intent = await create_intent(
        session,
        services,
        payment_id=payment_id,
        quote=row,
        account=account,
        idempotency_key=idempotency_key,
        request_fingerprint=request_fingerprint,
        purpose=PaymentPurpose.PURCHASE,
    )
    return await insert_payment(
        session,
        services=services,
        account=account,
        payment_id=payment_id,
        quote=row,
        intent=intent,
        idempotency_key=idempotency_key,
        request_fingerprint=request_fingerprint,
        purpose=PaymentPurpose.PURCHASE,
    )


async def create_intent(
    session: AsyncSession,
    services: OnrampServices,
    *,
    payment_id: str,
    quote: OnrampQuote,
    account: CustomerAccount,
    idempotency_key: str,
    request_fingerprint: str,
    purpose: PaymentPurpose,
    enrollment_id: str | None = None,
) -> CreatedIntent:
    """The card PaymentIntent, once the customer's card limits allow it (``limits``: their
    lock is held from here until ``insert_payment`` commits). Its Idempotency-Key and metadata
    derive from the (deterministic) payment id and the request."""
    gateway = require_gateway(services.stripe)
    await limits.require_within_limits(
        session,
        settings=services.settings,
        customer_id=account.customer.id,
        fiat_amount=quote.fiat_amount,
    )
    metadata = {
        "ovpp_payment_id": payment_id,
        "ovpp_quote_id": quote.id,
        "ovpp_wallet": account.wallet.address,
        "ovpp_token": quote.token,
        "ovpp_token_amount": str(quote.token_amount),
        "ovpp_purpose": purpose.value,
        # With the above, what the processor needs to recreate the payment's row (and its
        # quote's) from the PaymentIntent alone, should the row ever be missing (recovery.py).
        "ovpp_customer_id": account.customer.id,
        "ovpp_wallet_id": account.wallet.id,
        "ovpp_idempotency_key": idempotency_key,
        "ovpp_request_fingerprint": request_fingerprint,
        "ovpp_fiat_amount": str(quote.fiat_amount),
        "ovpp_fee_amount": str(quote.fee_amount),
        "ovpp_price": quote.price,
    }
    if enrollment_id:
        metadata["ovpp_enrollment_id"] = enrollment_id
    return await gateway.create_card_payment(
        amount=quote.fiat_amount,
        currency=quote.currency,
        metadata=metadata,
        idempotency_key=f"ovpp-onramp-{payment_id}",
    )


async def insert_payment(
    session: AsyncSession,
    *,
    services: OnrampServices,
    account: CustomerAccount,
    payment_id: str,
    quote: OnrampQuote,
    intent: CreatedIntent,
    idempotency_key: str,
    request_fingerprint: str,
    purpose: PaymentPurpose,
    enrollment_id: str | None = None,
) -> OpenedPayment:
    """Store the payment and **commit** ``session``, so the row is on record before its client
    secret leaves: whatever happens to the rest of the caller's transaction (a later field of
    the GraphQL document failing rolls the request back), the payment the customer can now pay
    is delivered when paid. The commit takes what ``session`` holds with it (a card
    enrollment's row and its quote; an earlier field's rows, which a document with one
    value-moving mutation may have). A concurrent request with the same key or quote loses in
    SQL, and then its PaymentIntent (which nobody can pay: its secret was never handed out) is
    canceled."""
    now = utc_now()
    inserted = await repository.insert_payment_if_absent(
        session,
        {
            "id": payment_id,
            "customer_id": account.customer.id,
            "wallet_id": account.wallet.id,
            "wallet_address": account.wallet.address,
            "idempotency_key": idempotency_key,
            "request_fingerprint": request_fingerprint,
            "purpose": purpose.value,
            "enrollment_id": enrollment_id,
            "quote_id": quote.id,
            "token": quote.token,
            "token_amount": quote.token_amount,
            "fiat_amount": quote.fiat_amount,
            "fee_amount": quote.fee_amount,
            "currency": quote.currency,
            "stripe_payment_intent_id": intent.id,
            "status": PaymentStatus.REQUIRES_PAYMENT.value,
            "refunded_amount": 0,
            "disputed": False,
            "clawback_required": False,
            "created_at": now,
            "updated_at": now,
        },
    )
    winner = await repository.payment_by_key(
        session, customer_id=account.customer.id, idempotency_key=idempotency_key
    )
    if inserted and winner is not None:
        await session.commit()
        return OpenedPayment(winner, intent.client_secret)
    gateway = require_gateway(services.stripe)
    if winner is None or winner.stripe_payment_intent_id != intent.id:
        await gateway.cancel(intent.id)
    if winner is None:
        raise InvalidInput("this quote was already used by another payment", field="quoteId")
    return await replay(services, winner, request_fingerprint=request_fingerprint)


async def replay(
    services: OnrampServices, payment: OnrampPayment, *, request_fingerprint: str
) -> OpenedPayment:
    if payment.request_fingerprint != request_fingerprint:
        raise InvalidInput(
            "this idempotency key was already used for a different payment",
            field="idempotencyKey",
        )
    secret = None
    if payment.status in AWAITING_PAYMENT:
        secret = await require_gateway(services.stripe).client_secret(
            payment.stripe_payment_intent_id
        )
    return OpenedPayment(payment, secret)


async def payments_of(
    session: AsyncSession, *, customer_id: str, limit: int
) -> list[tuple[OnrampPayment, RelayTransaction | None]]:
    """The customer's card payments, newest first, each with its delivery transaction."""
    return await repository.payments_of_customer(session, customer_id=customer_id, limit=limit)
