"""Relayed transfers: quotes, transactions, pagination, and their mutations, query and
subscription, a thin skin over relayer/."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Annotated

import strawberry

from api.context import RequestContext
from api.graphql.common import (
    RESERVED_KEYS,
    PageInfo,
    TokenKind,
    TokenType,
    decode_cursor,
    encode_cursor,
    require_page_size,
    token_of_kind,
    units_of_kind,
    wire_enum,
)
from api.graphql.failures import (
    InsufficientFunds,
    InvalidInput,
    PolicyViolation,
    QuoteExpired,
    SponsorRefused,
    typed_failures,
)
from chain.tokens import TokenInfo
from core.errors import NotFound
from identity.principal import Scope
from relayer import repository, service
from relayer.models import FINAL_STATUSES, RelayStatus, RelayTransaction
from relayer.models import FeeQuote as FeeQuoteRow

Info = strawberry.Info[RequestContext, None]
SUBSCRIPTION_POLL_SECONDS = 0.1

TransactionStatus = wire_enum(RelayStatus, name="TransactionStatus")


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
        fee_token = token_of_kind(tokens, row.fee_token)
        assert fee_token is not None
        return cls(
            id=strawberry.ID(row.id),
            fee_token=fee_token,
            fee_amount=units_of_kind(tokens, row.fee_token, row.fee_amount),
            sponsored=row.sponsored,
            sponsor_name=sponsor_name,
            expires_at=row.expires_at,
        )


@strawberry.type(description="A relayed transaction. The customer never pays native gas.")
class Transaction:
    id: strawberry.ID
    status: TransactionStatus  # type: ignore[valid-type]
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
        token = token_of_kind(tokens, row.token)
        assert token is not None
        return cls(
            id=strawberry.ID(row.id),
            status=TransactionStatus(row.status),
            hash=row.tx_hash,
            token=token,
            amount=units_of_kind(tokens, row.token, row.amount),
            to=row.to_address,
            fee_token=token_of_kind(tokens, row.fee_token),
            fee_amount=units_of_kind(tokens, row.fee_token, row.fee_amount)
            if row.fee_token
            else "0",
            sponsored=row.sponsored,
            created_at=row.created_at,
            confirmed_at=row.confirmed_at,
            error=row.error,
        )


TransferResult = Annotated[
    Transaction
    | InsufficientFunds
    | PolicyViolation
    | QuoteExpired
    | SponsorRefused
    | InvalidInput,
    strawberry.union("TransferResult"),
]


@strawberry.type
class TransactionEdge:
    cursor: str
    node: Transaction


@strawberry.type
class TransactionConnection:
    edges: list[TransactionEdge]
    page_info: PageInfo


def _transfer_input(input: TransferQuoteInput | TransferInput) -> service.TransferInput:
    return service.TransferInput(
        token=input.token.value, to=input.to, amount=input.amount, fee_token=input.fee_token.value
    )


async def quote_transfer(info: Info, input: TransferQuoteInput) -> FeeQuote:
    context = info.context
    account = await context.account(Scope.WALLET_READ)
    principal = await context.principal()
    session = await context.session()
    made = await service.quote_transfer(
        session,
        services=context.services,
        account=account,
        tenant_id=principal.tenant_id,
        raw=_transfer_input(input),
    )
    return FeeQuote.from_row(
        made.row, tokens=context.services.chain.tokens, sponsor_name=made.sponsor_name
    )


@typed_failures(TransferResult)
async def transfer(info: Info, input: TransferInput) -> TransferResult:  # type: ignore[valid-type]
    context = info.context
    account = await context.account(Scope.WALLET_SIGN)
    session = await context.session()
    row = await service.request_transfer(
        session,
        services=context.services,
        account=account,
        raw=_transfer_input(input),
        quote_id=str(input.quote_id),
        idempotency_key=input.idempotency_key,
    )
    # The one commit outside UnitOfWork: on PostgreSQL it makes a sponsored transfer's
    # reservation and may refuse it, which must come back as this field's SponsorRefused.
    await service.commit_transfer(session)
    return Transaction.from_row(row, tokens=context.services.chain.tokens)


async def transaction(info: Info, id: strawberry.ID) -> Transaction:
    context = info.context
    account = await context.account(Scope.WALLET_READ)
    async with context.read_session() as session:
        row = await repository.transaction_of_wallet(
            session, wallet_id=account.wallet.id, transaction_id=str(id)
        )
    if row is None:
        raise NotFound("no such transaction in this wallet")
    return Transaction.from_row(row, tokens=context.services.chain.tokens)


async def wallet_transactions(
    info: Info, *, wallet_id: str, first: int, after: str | None
) -> TransactionConnection:
    require_page_size(first)
    async with info.context.read_session() as session:
        rows = await repository.transactions_page(
            session,
            wallet_id=wallet_id,
            first=first,
            after=decode_cursor(after) if after else None,
        )
    tokens = info.context.services.chain.tokens
    edges = [
        TransactionEdge(
            cursor=encode_cursor(created_at=row.created_at, row_id=row.id),
            node=Transaction.from_row(row, tokens=tokens),
        )
        for row in rows[:first]
    ]
    return TransactionConnection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=len(rows) > first, end_cursor=edges[-1].cursor if edges else None
        ),
    )


async def transaction_updates(info: Info, id: strawberry.ID) -> AsyncGenerator[Transaction, None]:
    """Pushes the transaction now and at each status change, until it is final."""
    context = info.context
    account = await context.account(Scope.WALLET_READ)
    last_status = None
    while True:
        async with context.services.db.session() as session:
            row = await repository.transaction_of_wallet(
                session, wallet_id=account.wallet.id, transaction_id=str(id)
            )
        if row is None:
            raise NotFound("no such transaction in this wallet")
        if row.status != last_status:
            last_status = row.status
            yield Transaction.from_row(row, tokens=context.services.chain.tokens)
        if row.status in FINAL_STATUSES:
            return
        await asyncio.sleep(SUBSCRIPTION_POLL_SECONDS)
