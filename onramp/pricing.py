"""Onramp prices: a fiat amount (fee included) ↔ a token amount, in integers only.

    fee    = ceil(fiat × fee_bps / 10 000) + fee_fixed
    tokens = floor((fiat − fee) / price)                          (the buyer names the fiat)
    fiat   = ceil((ceil(tokens × price) + fee_fixed) × 10 000 / (10 000 − fee_bps))
                                                                  (the buyer names the tokens)

Fiat is in the currency's minor unit (cents), tokens in base units, ``price`` is fiat per whole
token before the fee. Rounding always favours the treasury by less than one minor unit or one
token base unit, so a quote never sells below the configured price plus fee: naming the tokens
and paying the fiat computed for them buys at least those tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from chain.tokens import AmountError, TokenKind, format_units, parse_units
from core.settings import Settings

FIAT_DECIMALS = 2  # the onramp currency has cents (usd, eur, gbp, …)


class PricingError(ValueError):
    """An amount the onramp cannot sell; the message names why."""


@dataclass(frozen=True)
class OnrampTerms:
    currency: str
    price: Fraction  # fiat per whole token
    price_text: str
    fee_bps: int
    fee_fixed: int  # minor units
    min_fiat: int
    max_fiat: int


@dataclass(frozen=True)
class Priced:
    fiat_amount: int  # minor units, fee included: what the card is charged
    fee_amount: int  # minor units
    token_amount: int  # base units: what the wallet receives


def terms_for(settings: Settings, token: TokenKind) -> OnrampTerms:
    price_text = (
        settings.onramp_price_ovpp if token == TokenKind.OVPP else settings.onramp_price_stablecoin
    )
    try:
        return OnrampTerms(
            currency=settings.onramp_currency.lower(),
            price=Fraction(price_text),
            price_text=price_text,
            fee_bps=settings.onramp_fee_bps,
            fee_fixed=parse_units(settings.onramp_fee_fixed, FIAT_DECIMALS),
            min_fiat=parse_units(settings.onramp_min_fiat, FIAT_DECIMALS),
            max_fiat=parse_units(settings.onramp_max_fiat, FIAT_DECIMALS),
        )
    except (ValueError, ZeroDivisionError) as error:
        raise PricingError(f"the onramp price settings are not valid: {error}") from error


def fee_for(fiat_amount: int, terms: OnrampTerms) -> int:
    return -(-fiat_amount * terms.fee_bps // 10_000) + terms.fee_fixed


def price_fiat(fiat_amount: int, *, token_decimals: int, terms: OnrampTerms) -> Priced:
    """What ``fiat_amount`` buys."""
    _check_limits(fiat_amount, terms)
    fee = fee_for(fiat_amount, terms)
    net = fiat_amount - fee
    if net <= 0 or terms.price <= 0:
        raise PricingError("the amount does not cover the fee")
    tokens = Fraction(net * 10**token_decimals, 10**FIAT_DECIMALS) / terms.price
    token_amount = tokens.numerator // tokens.denominator
    if token_amount <= 0:
        raise PricingError("the amount buys nothing at this price")
    return Priced(fiat_amount=fiat_amount, fee_amount=fee, token_amount=token_amount)


def price_tokens(token_amount: int, *, token_decimals: int, terms: OnrampTerms) -> Priced:
    """What buying exactly ``token_amount`` costs."""
    if token_amount <= 0:
        raise PricingError("the token amount must be more than zero")
    if terms.fee_bps >= 10_000 or terms.price <= 0:
        raise PricingError("the onramp price settings are not valid")
    net_exact = Fraction(token_amount, 10**token_decimals) * terms.price * 10**FIAT_DECIMALS
    net = -(-net_exact.numerator // net_exact.denominator)
    gross = Fraction((net + terms.fee_fixed) * 10_000, 10_000 - terms.fee_bps)
    fiat_amount = -(-gross.numerator // gross.denominator)
    _check_limits(fiat_amount, terms)
    return Priced(fiat_amount=fiat_amount, fee_amount=fiat_amount - net, token_amount=token_amount)


def parse_fiat(text: str) -> int:
    try:
        return parse_units(text, FIAT_DECIMALS)
    except AmountError as error:
        raise PricingError(str(error)) from error


def _check_limits(fiat_amount: int, terms: OnrampTerms) -> None:
    if fiat_amount < terms.min_fiat:
        raise PricingError(
            f"a card payment is at least {format_units(terms.min_fiat, FIAT_DECIMALS)} "
            f"{terms.currency.upper()}"
        )
    if fiat_amount > terms.max_fiat:
        raise PricingError(
            f"a card payment is at most {format_units(terms.max_fiat, FIAT_DECIMALS)} "
            f"{terms.currency.upper()}"
        )
