"""Card onramp mutations and the viewer's card payments: a thin skin over onramp/."""

from __future__ import annotations

import strawberry

from api.context import RequestContext
from api.onramp_types import (
    CreateOnrampPaymentInput,
    CreateOnrampPaymentResult,
    OnrampPayment,
    OnrampQuote,
    OnrampQuoteInput,
    OnrampQuoteResult,
    OnrampUnavailable,
)
from api.relayer_types import failure_from_error
from core.errors import DomainError, InvalidInput
from identity.principal import Scope
from onramp import payments, quotes
from onramp.errors import OnrampUnavailable as OnrampUnavailableError

Info = strawberry.Info[RequestContext, None]


def _request(input: OnrampQuoteInput | CreateOnrampPaymentInput) -> quotes.QuoteRequest:
    return quotes.QuoteRequest(
        token=input.token.value,
        fiat_amount=input.fiat_amount,
        token_amount=input.token_amount,
        currency=input.currency,
    )


def _failure(error: DomainError, info: Info) -> object:
    if isinstance(error, OnrampUnavailableError):
        return OnrampUnavailable(message=error.message)
    return failure_from_error(error, tokens=info.context.services.chain.tokens)


async def quote_onramp(info: Info, input: OnrampQuoteInput) -> OnrampQuoteResult:  # type: ignore[valid-type]
    context = info.context
    account = await context.account(Scope.WALLET_READ)
    session = await context.session()
    try:
        row = await quotes.quote(
            session, services=context.services, wallet_id=account.wallet.id, request=_request(input)
        )
    except (InvalidInput, OnrampUnavailableError) as error:
        await context.rollback()
        return _failure(error, info)  # type: ignore[return-value]
    return OnrampQuote.from_row(row, tokens=context.services.chain.tokens)


async def create_onramp_payment(
    info: Info, input: CreateOnrampPaymentInput
) -> CreateOnrampPaymentResult:  # type: ignore[valid-type]
    context = info.context
    account = await context.account(Scope.WALLET_SIGN)
    session = await context.session()
    try:
        opened = await payments.create_payment(
            session,
            services=context.services,
            account=account,
            request=_request(input),
            quote_id=str(input.quote_id),
            idempotency_key=input.idempotency_key,
        )
    except DomainError as error:
        await context.rollback()
        return _failure(error, info)  # type: ignore[return-value]
    return OnrampPayment.from_row(
        opened.payment, tokens=context.services.chain.tokens, client_secret=opened.client_secret
    )


async def viewer_onramp_payments(info: Info, customer_id: str, first: int) -> list[OnrampPayment]:
    if not 1 <= first <= 100:
        raise InvalidInput("first must be between 1 and 100", field="first")
    async with info.context.read_session() as session:
        rows = await payments.payments_of(session, customer_id=customer_id, limit=first)
    tokens = info.context.services.chain.tokens
    return [OnrampPayment.from_row(row, tokens=tokens, delivery=job) for row, job in rows]
