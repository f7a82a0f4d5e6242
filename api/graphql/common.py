"""Wire types every domain shares: tokens, balances, the chain, pagination, and the way a
domain enum becomes a GraphQL enum. Built with ``from_*`` constructors from domain objects or
table rows (a wire type lists its fields, so the schema cannot change by accident and no
secret column can leak)."""

from __future__ import annotations

import base64
from datetime import datetime
from enum import Enum
from typing import TypeVar

import strawberry

from chain.tokens import TokenInfo, format_units
from core.errors import InvalidInput
from core.idempotency import RESERVED_IDEMPOTENCY_KEY_PREFIXES

RESERVED_KEYS = (
    "Keys starting with "
    + ", ".join(f"`{prefix}`" for prefix in RESERVED_IDEMPOTENCY_KEY_PREFIXES)
    + " are the backend's own: refused with InvalidInput."
)
"""Said of every mutation's ``idempotencyKey``."""

DomainEnum = TypeVar("DomainEnum", bound=type[Enum])


def wire_enum(
    domain: DomainEnum,
    *,
    name: str,
    description: str | None = None,
    value_descriptions: dict[str, str] | None = None,
) -> DomainEnum:
    """The domain's own enum as a GraphQL enum (same values, same order), so a new state is
    added in one place."""
    wrapped = strawberry.enum(domain, name=name, description=description)
    for value in wrapped.__strawberry_definition__.values:  # type: ignore[attr-defined]
        value.description = (value_descriptions or {}).get(value.name)
    return wrapped


@strawberry.enum(description="A token the customer can send or pay fees in.")
class TokenKind(Enum):
    OVPP = "OVPP"
    STABLECOIN = "STABLECOIN"


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


def token_of_kind(tokens: list[TokenInfo], kind: str | None) -> TokenType | None:
    """The wire token of a kind (``OVPP``, ``STABLECOIN``, ``NATIVE``); ``None`` for none."""
    if kind is None:
        return None
    return next((TokenType.from_info(t) for t in tokens if t.kind.value == kind), None)


def units_of_kind(tokens: list[TokenInfo], kind: str | None, raw: int) -> str:
    """``raw`` base units as a decimal string in the units of the token of that kind."""
    decimals = next((t.decimals for t in tokens if t.kind.value == kind), 18)
    return format_units(raw, decimals)


@strawberry.type(
    description="A balance: a served token's from the index (what `balanceOf` returns at the "
    "wallet's `asOfBlock`), the native token's read from the node at that block."
)
class Balance:
    token: TokenType
    amount: str = strawberry.field(
        description='Decimal string in token units, e.g. "12.5". Never a float.'
    )
    raw: str = strawberry.field(description="The integer amount in base units, as a string.")
    pending: str = strawberry.field(
        description='What is in flight and not in `amount` yet, a signed decimal string ("-13", '
        '"10", "0"): the wallet\'s relayed transactions and their fees not indexed yet '
        "(negative), and tokens other wallets here are sending it (positive)."
    )

    @classmethod
    def from_index(cls, token: TokenInfo, raw: int, *, pending: int) -> Balance:
        return cls(
            token=TokenType.from_info(token),
            amount=format_units(raw, token.decimals),
            raw=str(raw),
            pending=("-" if pending < 0 else "") + format_units(abs(pending), token.decimals),
        )


@strawberry.type(description="The chain the wallet lives on.")
class Chain:
    chain_id: int
    name: str


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


def encode_cursor(*, created_at: datetime, row_id: str) -> str:
    """A cursor for keyset pagination by ``(created_at, id)``."""
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{row_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created, _, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(created), row_id
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidInput("the cursor is not one this API gave out", field="after") from error


def require_page_size(first: int, *, most: int = 100) -> None:
    if not 1 <= first <= most:
        raise InvalidInput(f"first must be between 1 and {most}", field="first")
