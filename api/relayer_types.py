"""Wire types of relayed transactions: quotes, transactions, typed failures, pagination."""

from __future__ import annotations

import base64
from datetime import datetime
from enum import Enum
from typing import Annotated

import strawberry

from api.wire import TokenType
from chain.tokens import TokenInfo, format_units
from core.errors import InvalidInput as InvalidInputError
from core.idempotency import RESERVED_IDEMPOTENCY_KEY_PREFIXES
from relayer import errors
from relayer.models import FeeQuote as FeeQuoteRow
from relayer.models import RelayTransaction

RESERVED_KEYS = (
    "Keys starting with "
    + ", ".join(f"`{prefix}`" for prefix in RESERVED_IDEMPOTENCY_KEY_PREFIXES)
    + " are the backend's own: refused with InvalidInput."
)
"""Said of every mutation's ``idempotencyKey``."""


@strawberry.enum(description="A token the customer can send or pay fees in.")
class TokenKind(Enum):
    OVPP = "OVPP"
    STABLECOIN = "STABLECOIN"


@strawberry.enum
class TransactionStatus(Enum):
    QUEUED = "QUEUED"
    SIGNED = "SIGNED"
    SUBMITTED = "SUBMITTED"
    MINED = "MINED"
    CONFIRMED = "CONFIRMED"
    FAILED = "FAILED"
    REPLACED = "REPLACED"


@strawberry.input
class TransferQuoteInput:
    token: TokenKind
    to: str = strawberry.field(description="Destination address (0x…).")
    amount: str = strawberry.field(description='Decimal string in token units, e.g. "12.5".')
    fee_token: TokenKind = strawberry.field(description="What the gas fee is paid in.")


@strawberry.input
class TransferInput:
    token: TokenKind
    to: str
    amount: str
    fee_token: TokenKind
    quote_id: strawberry.ID
    idempotency_key: str = strawberry.field(
        description="Client-chosen, 1–255 characters. The same key with the same input returns "
        "the same transaction; with a different input, InvalidInput. " + RESERVED_KEYS
    )


def _token(tokens: list[TokenInfo], kind: str | None) -> TokenType | None:
    if kind is None:
        return None
    return next((TokenType.from_info(t) for t in tokens if t.kind.value == kind), None)


def _units(tokens: list[TokenInfo], kind: str | None, raw: int) -> str:
    decimals = next((t.decimals for t in tokens if t.kind.value == kind), 18)
    return format_units(raw, decimals)


@strawberry.type(description="What a transfer will cost. Valid until expiresAt.")
class FeeQuote:
    id: strawberry.ID
    fee_token: TokenType
    fee_amount: str = strawberry.field(description="Decimal string; 0 when sponsored.")
    sponsored: bool
    sponsor_name: str | None
    expires_at: datetime

    @classmethod
    def from_row(
        cls, row: FeeQuoteRow, *, tokens: list[TokenInfo], sponsor_name: str | None
    ) -> FeeQuote:
        fee_token = _token(tokens, row.fee_token)
        assert fee_token is not None
        return cls(
            id=strawberry.ID(row.id),
            fee_token=fee_token,
            fee_amount=_units(tokens, row.fee_token, row.fee_amount),
            sponsored=row.sponsored,
            sponsor_name=sponsor_name,
            expires_at=row.expires_at,
        )


@strawberry.type(description="A relayed transaction. The customer never pays native gas.")
class Transaction:
    id: strawberry.ID
    status: TransactionStatus
    hash: str | None
    token: TokenType
    amount: str
    to: str
    fee_token: TokenType | None
    fee_amount: str
    sponsored: bool
    created_at: datetime
    confirmed_at: datetime | None
    error: str | None

    @classmethod
    def from_row(cls, row: RelayTransaction, *, tokens: list[TokenInfo]) -> Transaction:
        token = _token(tokens, row.token)
        assert token is not None
        return cls(
            id=strawberry.ID(row.id),
            status=TransactionStatus(row.status),
            hash=row.tx_hash,
            token=token,
            amount=_units(tokens, row.token, row.amount),
            to=row.to_address,
            fee_token=_token(tokens, row.fee_token),
            fee_amount=_units(tokens, row.fee_token, row.fee_amount) if row.fee_token else "0",
            sponsored=row.sponsored,
            created_at=row.created_at,
            confirmed_at=row.confirmed_at,
            error=row.error,
        )


@strawberry.type(description="The wallet holds too little of a token (pending transfers count).")
class InsufficientFunds:
    message: str
    token: TokenType
    required: str
    available: str


@strawberry.type(description="A wallet policy forbids this (daily limit, allowed destinations).")
class PolicyViolation:
    message: str
    rule: str


@strawberry.type(description="The fee quote expired: ask for a new one.")
class QuoteExpired:
    message: str


@strawberry.type(description="The sponsoring utility will not pay; nothing was charged or sent.")
class SponsorRefused:
    message: str
    reason: str = strawberry.field(
        description="NOT_ELIGIBLE, PER_TRANSACTION_CAP, CUSTOMER_DAILY_CAP, PERIOD_CAP or "
        "BUDGET_EXHAUSTED."
    )
    sponsor_name: str | None


@strawberry.type(description="The input is not acceptable; `field` names the culprit.")
class InvalidInput:
    message: str
    field: str | None


TransferResult = Annotated[
    Transaction
    | InsufficientFunds
    | PolicyViolation
    | QuoteExpired
    | SponsorRefused
    | InvalidInput,
    strawberry.union("TransferResult"),
]


def failure_from_error(error: Exception, *, tokens: list[TokenInfo]) -> object:
    if isinstance(error, errors.InsufficientFunds):
        token = next(TokenType.from_info(t) for t in tokens if t.symbol == error.token)
        return InsufficientFunds(
            message=error.message,
            token=token,
            required=format_units(error.required, error.decimals),
            available=format_units(max(error.available, 0), error.decimals),
        )
    if isinstance(error, errors.PolicyViolation):
        return PolicyViolation(message=error.message, rule=error.rule)
    if isinstance(error, errors.QuoteExpired):
        return QuoteExpired(message=error.message)
    if isinstance(error, errors.SponsorRefused):
        return SponsorRefused(
            message=error.message, reason=error.reason, sponsor_name=error.sponsor_name
        )
    if isinstance(error, InvalidInputError):
        return InvalidInput(message=error.message, field=error.field)
    raise error


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class TransactionEdge:
    cursor: str
    node: Transaction


@strawberry.type
class TransactionConnection:
    edges: list[TransactionEdge]
    page_info: PageInfo


def encode_cursor(row: RelayTransaction) -> str:
    return base64.urlsafe_b64encode(f"{row.created_at.isoformat()}|{row.id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created, _, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(created), row_id
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidInputError("the cursor is not one this API gave out", field="after") from error
