"""Mutations, queries and the subscription of relayed transfers: a thin skin over relayer/."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import strawberry

from api.context import RequestContext
from api.relayer_types import (
    FeeQuote,
    Transaction,
    TransferInput,
    TransferQuoteInput,
    TransferResult,
    failure_from_error,
)
from core.errors import DomainError, NotFound
from identity.principal import Scope
from relayer import repository, service
from relayer.models import FINAL_STATUSES

Info = strawberry.Info[RequestContext, None]
SUBSCRIPTION_POLL_SECONDS = 0.1


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
        raw=service.TransferInput(
            token=input.token.value,
            to=input.to,
            amount=input.amount,
            fee_token=input.fee_token.value,
        ),
    )
    return FeeQuote.from_row(
        made.row, tokens=context.services.chain.tokens, sponsor_name=made.sponsor_name
    )


async def transfer(info: Info, input: TransferInput) -> TransferResult:  # type: ignore[valid-type]
    context = info.context
    account = await context.account(Scope.WALLET_SIGN)
    session = await context.session()
    try:
        row = await service.request_transfer(
            session,
            services=context.services,
            account=account,
            raw=service.TransferInput(
                token=input.token.value,
                to=input.to,
                amount=input.amount,
                fee_token=input.fee_token.value,
            ),
            quote_id=str(input.quote_id),
            idempotency_key=input.idempotency_key,
        )
        await service.commit_transfer(session)  # a sponsor's budget is judged by the commit
    except DomainError as error:
        await context.rollback()  # nothing charged, no nonce taken
        return failure_from_error(error, tokens=context.services.chain.tokens)  # type: ignore[return-value]
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
