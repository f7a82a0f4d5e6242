"""The signed-in customer and their wallet: the root of everything a customer reads."""

from __future__ import annotations

import asyncio

import strawberry

from activity.balances import IndexedBalances
from activity.feed import WalletRef
from api.context import RequestContext
from api.graphql import activity, devices, onramp, programs, relayer, rewards
from api.graphql.activity import ActivityConnection, ActivityFilter
from api.graphql.common import Balance
from api.graphql.devices import Device
from api.graphql.onramp import CardLimits, HeldBalance, OnrampPayment
from api.graphql.programs import Enrollment
from api.graphql.relayer import TransactionConnection
from api.graphql.rewards import RewardConnection
from identity.service import CustomerAccount

Info = strawberry.Info[RequestContext, None]


@strawberry.type(description="A custodial wallet. Its key is held, encrypted, by the backend.")
class Wallet:
    address: str
    wallet_id: strawberry.Private[str]
    customer_id: strawberry.Private[str]
    indexed: strawberry.Private[asyncio.Future[IndexedBalances] | None] = None

    @strawberry.field(description="Relayed transactions, newest first (cursor pagination).")
    async def transactions(
        self, info: Info, first: int = 20, after: str | None = None
    ) -> TransactionConnection:
        return await relayer.wallet_transactions(
            info, wallet_id=self.wallet_id, first=first, after=after
        )

    @strawberry.field(
        description="Everything that moved the wallet's value, newest first (cursor "
        "pagination): sent, received, fees, purchases, enrollment fees; in flight, on chain or "
        "failed. A relayed transfer and its on-chain transfer are one item."
    )
    async def activity(
        self,
        info: Info,
        first: int = 20,
        after: str | None = None,
        filter: ActivityFilter | None = None,
    ) -> ActivityConnection:
        return await activity.wallet_activity_page(
            info, self._ref, first=first, after=after, filter=filter
        )

    @strawberry.field(
        description="OVPP and the stablecoin from the index, as of `asOfBlock`, with what is in "
        "flight; the native token from the node at that block."
    )
    async def balances(self, info: Info) -> list[Balance]:
        return await activity.balances_of(info, self._ref, await self._indexed(info))

    @strawberry.field(
        description="The block the balances and the activity are as of (null: nothing indexed yet)."
    )
    async def as_of_block(self, info: Info) -> int | None:
        return (await self._indexed(info)).as_of_block

    @strawberry.field(
        description="Whether the index is more than the configured number of blocks behind "
        "the chain (OVPP_INDEXER_STALE_BLOCKS): balances and activity may miss recent blocks."
    )
    async def stale(self, info: Info) -> bool:
        return await activity.is_stale(info, await self._indexed(info))

    @property
    def _ref(self) -> WalletRef:
        return WalletRef(id=self.wallet_id, address=self.address)

    async def _indexed(self, info: Info) -> IndexedBalances:
        """Read once per request, whichever of the fields asks first."""
        if self.indexed is None:
            self.indexed = asyncio.ensure_future(activity.wallet_balances(info, self._ref))
        return await self.indexed

    @strawberry.field(
        description="Tokens bought by card (here, or in a wallet of this service that sent them "
        "here) and still held, soonest free first: they cannot be sent to an address outside "
        "this service before `until` (fees, enrollments and transfers to this service's wallets "
        "are not limited; the hold goes with them). Empty when nothing is held."
    )
    async def held(self, info: Info) -> list[HeldBalance]:
        return await onramp.viewer_held(
            info, customer_id=self.customer_id, wallet_id=self.wallet_id
        )

    @strawberry.field(description="The customer's card limits and what is left of them.")
    async def card_limits(self, info: Info) -> CardLimits:
        return await onramp.viewer_card_limits(info, self.customer_id)


@strawberry.type(description="The signed-in customer.")
class Viewer:
    id: strawberry.ID
    email: str | None
    wallet: Wallet

    @strawberry.field(description="The customer's devices.")
    async def devices(self, info: Info) -> list[Device]:
        return await devices.viewer_devices(info, str(self.id))

    @strawberry.field(
        description="The customer's enrollments, with connection parameters once ACTIVE."
    )
    async def enrollments(self, info: Info) -> list[Enrollment]:
        return await programs.viewer_enrollments(info, str(self.id))

    @strawberry.field(
        description="The customer's card payments, newest first: status, amounts, and the "
        "delivery transaction."
    )
    async def onramp_payments(self, info: Info, first: int = 20) -> list[OnrampPayment]:
        return await onramp.viewer_onramp_payments(info, str(self.id), first)

    @strawberry.field(
        description="The customer's event rewards, newest first (cursor pagination), each with "
        "its event, contribution figures and Merkle proof (docs/rewards.md)."
    )
    async def rewards(
        self, info: Info, first: int = 20, after: str | None = None
    ) -> RewardConnection:
        return await rewards.viewer_rewards(
            info, customer_id=str(self.id), first=first, after=after
        )

    @strawberry.field(description="OVPP earned from events: every CONFIRMED reward.")
    async def total_earned(self, info: Info) -> str:
        return await rewards.viewer_total_earned(info, str(self.id))

    @classmethod
    def from_account(cls, account: CustomerAccount) -> Viewer:
        return cls(
            id=strawberry.ID(account.customer.id),
            email=account.customer.email,
            wallet=Wallet(
                address=account.wallet.address,
                wallet_id=account.wallet.id,
                customer_id=account.customer.id,
            ),
        )
