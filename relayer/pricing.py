"""Fee quotes: what a relayed action costs the customer in OVPP or stablecoin.

    fee = ceil( gas_limit × max_fee_per_gas × P_native / P_fee_token
                × 10^decimals(fee_token) / 10^18 × (10_000 + markup_bps) / 10_000 )

``gas_limit`` covers the whole relayed transaction, the fee transfer included, and
``max_fee_per_gas`` is the most the relayer will pay per gas: the quote is an upper bound of
the real cost, so the fee collected (exactly the quoted amount, signed by the customer) never
falls short of the gas the relayer pays, and is never above the quote. Prices are USD per whole
token from a ``PriceOracle``; a price older than ``max_age`` is refused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

from chain.tokens import TokenKind
from core.errors import DomainError


class PriceUnavailable(DomainError):
    code = "PRICE_UNAVAILABLE"


@dataclass(frozen=True)
class Price:
    usd: Fraction
    observed_at: float


class PriceOracle(Protocol):
    async def price(self, token: TokenKind) -> Price: ...


class FixedPriceOracle:
    """Configured rates (local chains, tests). A real feed implements ``PriceOracle``."""

    def __init__(self, prices: dict[TokenKind, str]) -> None:
        self._prices = {kind: Fraction(value) for kind, value in prices.items()}

    async def price(self, token: TokenKind) -> Price:
        if token not in self._prices:
            raise PriceUnavailable(f"no price for {token.value}")
        return Price(self._prices[token], time.time())


@dataclass(frozen=True)
class GasQuote:
    gas_limit: int
    max_fee_per_gas: int

    @property
    def max_cost_wei(self) -> int:
        return self.gas_limit * self.max_fee_per_gas


async def fee_in_token(
    *,
    gas: GasQuote,
    fee_token: TokenKind,
    fee_token_decimals: int,
    oracle: PriceOracle,
    markup_bps: int,
    max_age_seconds: int,
) -> int:
    native, token = await oracle.price(TokenKind.NATIVE), await oracle.price(fee_token)
    now = time.time()
    for price in (native, token):
        if now - price.observed_at > max_age_seconds:
            raise PriceUnavailable("the token price is stale; try again in a moment")
        if price.usd <= 0:
            raise PriceUnavailable("the token price is not usable")
    amount = (
        Fraction(gas.max_cost_wei)
        * native.usd
        / token.usd
        * Fraction(10**fee_token_decimals, 10**18)
        * Fraction(10_000 + markup_bps, 10_000)
    )
    return -(-amount.numerator // amount.denominator)  # ceiling, in integers
