"""Onramp prices in integers: the fee, both directions, the limits, and that rounding never
sells below the configured price plus fee."""

from __future__ import annotations

import random
from dataclasses import replace
from fractions import Fraction

import pytest

from chain.tokens import TokenKind
from core.settings import load_settings
from onramp.pricing import (
    OnrampTerms,
    PricingError,
    fee_for,
    price_fiat,
    price_tokens,
    terms_for,
)

TERMS = OnrampTerms(
    currency="usd",
    price=Fraction("0.10"),
    price_text="0.10",
    fee_bps=300,
    fee_fixed=30,
    min_fiat=50,
    max_fiat=100_000,
)


def test_the_default_terms_come_from_the_settings() -> None:
    terms = terms_for(load_settings(environment="development"), TokenKind.OVPP)
    assert (terms.currency, terms.price, terms.fee_bps, terms.fee_fixed) == (
        "usd",
        Fraction(1, 10),
        300,
        30,
    )
    assert (terms.min_fiat, terms.max_fiat) == (50, 100_000)


def test_naming_the_tokens_charges_price_plus_fee_rounded_up() -> None:
    priced = price_tokens(250 * 10**18, token_decimals=18, terms=TERMS)
    # 25.00 net; (25.00 + 0.30) / 0.97 = 26.082… → 26.09
    assert (priced.fiat_amount, priced.fee_amount, priced.token_amount) == (2609, 109, 250 * 10**18)


def test_naming_the_fiat_buys_what_is_left_after_the_fee_rounded_down() -> None:
    stablecoin = replace(TERMS, price=Fraction(1), price_text="1")
    priced = price_fiat(2000, token_decimals=6, terms=stablecoin)
    assert (priced.fee_amount, priced.token_amount) == (90, 19_100_000)
    odd = price_fiat(777, token_decimals=18, terms=TERMS)
    assert odd.fee_amount == fee_for(777, TERMS) == 24 + 30
    assert odd.token_amount == (777 - 54) * 10**18 // 10  # 7.23 / 0.10 OVPP


def test_the_tokens_named_are_always_bought_by_the_fiat_charged() -> None:
    generator = random.Random(5)
    for _ in range(2_000):
        decimals = generator.choice((6, 18))
        amount = generator.randrange(1, 9_000) * 10 ** (decimals - generator.randrange(0, 4))
        try:
            priced = price_tokens(amount, token_decimals=decimals, terms=TERMS)
        except PricingError:
            continue
        bought = price_fiat(priced.fiat_amount, token_decimals=decimals, terms=TERMS)
        assert bought.token_amount >= amount
        assert priced.fee_amount >= fee_for(priced.fiat_amount, TERMS)


@pytest.mark.parametrize(
    ("fiat", "message"),
    [(49, "at least 0.5 USD"), (100_001, "at most 1000 USD")],
)
def test_amounts_outside_the_limits_are_refused(fiat: int, message: str) -> None:
    with pytest.raises(PricingError, match=message):
        price_fiat(fiat, token_decimals=18, terms=TERMS)


def test_an_amount_that_does_not_cover_the_fee_buys_nothing() -> None:
    with pytest.raises(PricingError, match="does not cover the fee"):
        price_fiat(31, token_decimals=18, terms=replace(TERMS, min_fiat=1))
