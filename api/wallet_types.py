"""Wire types of the signed-in customer and their wallet."""

from __future__ import annotations

import strawberry

from api.context import RequestContext
from api.wire import Balance
from identity.service import CustomerAccount


@strawberry.type(description="A custodial wallet. Its key is held, encrypted, by the backend.")
class Wallet:
    address: str

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

    @classmethod
    def from_account(cls, account: CustomerAccount) -> Viewer:
        return cls(
            id=strawberry.ID(account.customer.id),
            email=account.customer.email,
            wallet=Wallet(address=account.wallet.address),
        )
