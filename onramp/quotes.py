"""Quotes: what a card payment of the onramp buys, at which price, until when."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from chain.tokens import AmountError, TokenInfo, TokenKind, parse_units
from core.db import utc_now
from core.errors import InvalidInput
from onramp.deps import OnrampServices
from onramp.errors import OnrampUnavailable
from onramp.models import OnrampQuote
from onramp.pricing import (
    Priced,
    PricingError,
    parse_fiat,
    price_fiat,
    price_tokens,
    terms_for,
)

SELLABLE = (TokenKind.OVPP, TokenKind.STABLECOIN)


@dataclass(frozen=True)
class QuoteRequest:
    token: str
    fiat_amount: str | None
    token_amount: str | None
    currency: str


def sellable_token(services: OnrampServices, kind: str) -> TokenInfo:
    for token in services.chain.tokens:
        if token.kind in SELLABLE and kind.upper() in (token.kind.value, token.symbol.upper()):
            return token
    raise InvalidInput(f"{kind!r} cannot be bought by card", field="token")


def require_onramp(services: OnrampServices) -> None:
    if services.stripe is None:
        raise OnrampUnavailable(
            "card payments are not available here: the operator has not configured Stripe"
        )


def price_request(services: OnrampServices, request: QuoteRequest) -> tuple[TokenInfo, Priced, str]:
    """Exactly one of the two amounts names the purchase; the other is computed."""
    token = sellable_token(services, request.token)
    terms = terms_for(services.settings, token.kind)
    if request.currency.strip().lower() != terms.currency:
        raise InvalidInput(f"card payments are in {terms.currency.upper()} only", field="currency")
    if (request.fiat_amount is None) == (request.token_amount is None):
        raise InvalidInput("give either fiatAmount or tokenAmount, not both", field="fiatAmount")
    try:
        if request.fiat_amount is not None:
            priced = price_fiat(
                parse_fiat(request.fiat_amount), token_decimals=token.decimals, terms=terms
            )
        else:
            assert request.token_amount is not None
            try:
                amount = parse_units(request.token_amount, token.decimals)
            except AmountError as error:
                raise InvalidInput(str(error), field="tokenAmount") from error
            priced = price_tokens(amount, token_decimals=token.decimals, terms=terms)
    except PricingError as error:
        field = "fiatAmount" if request.fiat_amount is not None else "tokenAmount"
        raise InvalidInput(str(error), field=field) from error
    return token, priced, terms.price_text


async def quote(
    session: AsyncSession, *, services: OnrampServices, wallet_id: str, request: QuoteRequest
) -> OnrampQuote:
    require_onramp(services)
    token, priced, price_text = price_request(services, request)
    return await _store_quote(
        session,
        services=services,
        wallet_id=wallet_id,
        token=token,
        priced=priced,
        price_text=price_text,
    )


async def quote_tokens(
    session: AsyncSession,
    *,
    services: OnrampServices,
    wallet_id: str,
    token: TokenInfo,
    amount: int,
) -> OnrampQuote:
    """An internal quote for exactly ``amount`` (an enrollment fee bought by card)."""
    terms = terms_for(services.settings, token.kind)
    try:
        priced = price_tokens(amount, token_decimals=token.decimals, terms=terms)
    except PricingError as error:
        raise InvalidInput(str(error), field="paymentMethod") from error
    return await _store_quote(
        session,
        services=services,
        wallet_id=wallet_id,
        token=token,
        priced=priced,
        price_text=terms.price_text,
    )


async def _store_quote(
    session: AsyncSession,
    *,
    services: OnrampServices,
    wallet_id: str,
    token: TokenInfo,
    priced: Priced,
    price_text: str,
) -> OnrampQuote:
    row = OnrampQuote(
        wallet_id=wallet_id,
        token=token.kind.value,
        token_amount=priced.token_amount,
        fiat_amount=priced.fiat_amount,
        fee_amount=priced.fee_amount,
        currency=services.settings.onramp_currency.lower(),
        price=price_text,
        expires_at=utc_now() + timedelta(seconds=services.settings.onramp_quote_ttl_seconds),
    )
    session.add(row)
    await session.flush()
    return row
