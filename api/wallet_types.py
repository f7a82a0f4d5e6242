"""Wire types of the signed-in customer and their wallet."""

from __future__ import annotations

import strawberry

from api import enrollment_resolvers, onramp_resolvers
from api.context import RequestContext
from api.enrollment_types import Device, Enrollment
from api.onramp_types import OnrampPayment
from api.relayer_types import (
    PageInfo,
    Transaction,
    TransactionConnection,
    TransactionEdge,
    decode_cursor,
    encode_cursor,
)
from api.wire import Balance
from core.errors import InvalidInput
from identity.service import CustomerAccount
from relayer import repository


@strawberry.type(description="A custodial wallet. Its key is held, encrypted, by the backend.")
class Wallet:
    address: str
    wallet_id: strawberry.Private[str]

    @strawberry.field(description="Relayed transactions, newest first (cursor pagination).")
    async def transactions(
        self, info: strawberry.Info[RequestContext, None], first: int = 20, after: str | None = None
    ) -> TransactionConnection:
        if not 1 <= first <= 100:
            raise InvalidInput("first must be between 1 and 100", field="first")
        async with info.context.read_session() as session:
            rows = await repository.transactions_page(
                session,
                wallet_id=self.wallet_id,
                first=first,
                after=decode_cursor(after) if after else None,
            )
        tokens = info.context.services.chain.tokens
        edges = [
            TransactionEdge(
                cursor=encode_cursor(row), node=Transaction.from_row(row, tokens=tokens)
            )
            for row in rows[:first]
        ]
        return TransactionConnection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=len(rows) > first, end_cursor=edges[-1].cursor if edges else None
            ),
        )

    @strawberry.field(
        description="OVPP, the stablecoin and the native token, read from the chain in one "
        "round trip."
    )
    async def balances(self, info: strawberry.Info[RequestContext, None]) -> list[Balance]:
        readings = await info.context.services.chain.balances(self.address)
        return [Balance.from_chain(token, raw) for token, raw in readings]


@strawberry.type(description="The signed-in customer.")
class Viewer:
    id: strawberry.ID
    email: str | None
    wallet: Wallet

    @strawberry.field(description="The customer's devices.")
    async def devices(self, info: strawberry.Info[RequestContext, None]) -> list[Device]:
        return await enrollment_resolvers.viewer_devices(info, str(self.id))

    @strawberry.field(
        description="The customer's enrollments, with connection parameters once ACTIVE."
    )
    async def enrollments(self, info: strawberry.Info[RequestContext, None]) -> list[Enrollment]:
        return await enrollment_resolvers.viewer_enrollments(info, str(self.id))

    @strawberry.field(
        description="The customer's card payments, newest first: status, amounts, and the "
        "delivery transaction."
    )
    async def onramp_payments(
        self, info: strawberry.Info[RequestContext, None], first: int = 20
    ) -> list[OnrampPayment]:
        return await onramp_resolvers.viewer_onramp_payments(info, str(self.id), first)

    @classmethod
    def from_account(cls, account: CustomerAccount) -> Viewer:
        return cls(
            id=strawberry.ID(account.customer.id),
            email=account.customer.email,
            wallet=Wallet(address=account.wallet.address, wallet_id=account.wallet.id),
        )
