"""Wire types. Built from domain objects with ``from_*`` constructors, never table rows, so the
schema cannot change by accident and no secret column can leak."""

from __future__ import annotations

import strawberry

from chain.tokens import TokenInfo, format_units


@strawberry.type(name="Token", description="A token the wallet holds.")
class TokenType:
    symbol: str
    name: str
    decimals: int
    address: str | None = strawberry.field(
        description="Contract address; null for the chain's native (gas) token."
    )

    @classmethod
    def from_info(cls, token: TokenInfo) -> TokenType:
        return cls(
            symbol=token.symbol, name=token.name, decimals=token.decimals, address=token.address
        )


@strawberry.type(description="A balance read from the chain at request time.")
class Balance:
    token: TokenType
    amount: str = strawberry.field(
        description='Decimal string in token units, e.g. "12.5". Never a float.'
    )
    raw: str = strawberry.field(description="The integer amount in base units, as a string.")

    @classmethod
    def from_chain(cls, token: TokenInfo, raw: int) -> Balance:
        return cls(
            token=TokenType.from_info(token),
            amount=format_units(raw, token.decimals),
            raw=str(raw),
        )


@strawberry.type(description="The chain the wallet lives on.")
class Chain:
    chain_id: int
    name: str
