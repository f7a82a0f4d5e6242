"""A wallet's activity feed, its balances from the index, and the ``walletActivity``
subscription: a thin skin over activity/."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncGenerator
from datetime import datetime

import strawberry

from activity import feed
from activity.balances import IndexedBalances, indexed_balances
from activity.feed import ActivityPage, FeedContext, WalletRef
from activity.items import ActivityItem as ActivityItemView
from activity.items import ActivityKind as DomainActivityKind
from activity.items import ActivityStatus as DomainActivityStatus
from activity.repository import Position
from api.context import RequestContext
from api.graphql.common import Balance, PageInfo, TokenKind, TokenType, require_page_size, wire_enum
from api.graphql.relayer import Transaction
from chain.tokens import TokenInfo, format_units
from core.errors import InvalidInput
from identity.principal import Scope

Info = strawberry.Info[RequestContext, None]
WALLET_ACTIVITY_POLL_SECONDS = 1.0
"""How often a ``walletActivity`` subscription reads the feed's first page."""
WALLET_ACTIVITY_WINDOW = 20
"""The newest items a subscription watches for news and changes."""

ActivityKind = wire_enum(
    DomainActivityKind,
    name="ActivityKind",
    description="What moved the wallet's value.",
    value_descriptions={
        "SENT": "Tokens the wallet sent.",
        "RECEIVED": "Tokens the wallet received.",
        "FEE": "A gas fee the wallet paid in tokens.",
        "PURCHASE": "Tokens bought by card, delivered by the onramp.",
        "ENROLLMENT_FEE": "A program's enrollment fee.",
        "REWARD": "A program's reward (reserved).",
    },
)
ActivityStatus = wire_enum(
    DomainActivityStatus,
    name="ActivityStatus",
    value_descriptions={
        "PENDING": "In flight, or on chain fewer than the configured confirmations deep.",
        "CONFIRMED": "On chain, deep enough.",
        "FAILED": "A relayed transaction that failed: nothing moved.",
    },
)


@strawberry.input(description="Which items of the feed: any of these kinds, of this token.")
class ActivityFilter:
    kinds: list[ActivityKind] | None = None  # type: ignore[valid-type]
    token: TokenKind | None = None


@strawberry.type(description="Something that moved the wallet's value.")
class ActivityItem:
    id: strawberry.ID
    kind: ActivityKind  # type: ignore[valid-type]
    token: TokenType
    amount: str = strawberry.field(description="Decimal string in token units.")
    raw: str = strawberry.field(description="The integer amount in base units, as a string.")
    counterparty: str = strawberry.field(description="The other address.")
    counterparty_label: str | None = strawberry.field(
        description="A name for the counterparty when it is a wallet here (a utility's, the "
        'card treasury: "Card purchase", another customer\'s: "<utility> customer") or a known '
        "address (the fee treasury, the token issuer); null otherwise."
    )
    status: ActivityStatus  # type: ignore[valid-type]
    block_number: int | None
    tx_hash: str | None
    timestamp: datetime = strawberry.field(
        description="The block's time; for an item not on chain, when it was requested."
    )
    transaction_id: strawberry.Private[str | None]

    @strawberry.field(description="The wallet's relayed transaction behind it, if any.")
    async def transaction(self, info: Info) -> Transaction | None:
        if self.transaction_id is None:
            return None
        row = await info.context.loaders.transactions.load(self.transaction_id)
        return Transaction.from_row(row, tokens=info.context.services.chain.tokens) if row else None

    @classmethod
    def from_view(cls, item: ActivityItemView, *, tokens: list[TokenInfo]) -> ActivityItem:
        token = next(t for t in tokens if (t.address or "").lower() == item.token_address.lower())
        return cls(
            id=strawberry.ID(base64.urlsafe_b64encode(f"activity:{item.id}".encode()).decode()),
            kind=ActivityKind(item.kind),
            token=TokenType.from_info(token),
            amount=format_units(item.raw, token.decimals),
            raw=str(item.raw),
            counterparty=item.counterparty,
            counterparty_label=item.counterparty_label,
            status=ActivityStatus(item.status),
            block_number=item.block_number,
            tx_hash=item.tx_hash,
            timestamp=item.timestamp,
            transaction_id=item.transaction_id,
        )


@strawberry.type
class ActivityEdge:
    cursor: str
    node: ActivityItem


@strawberry.type
class ActivityConnection:
    edges: list[ActivityEdge]
    page_info: PageInfo


def encode_position(position: Position) -> str:
    text = f"{position.at.isoformat()}|{position.rank}|{position.key}"
    return base64.urlsafe_b64encode(text.encode()).decode()


def decode_position(cursor: str) -> Position:
    try:
        at, rank, key = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        position = Position(at=datetime.fromisoformat(at), rank=int(rank), key=key)
        position.sort_key()
        return position
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidInput("the cursor is not one this API gave out", field="after") from error


def feed_context(info: Info, wallet: WalletRef) -> FeedContext:
    services = info.context.services
    return FeedContext(
        wallet=wallet,
        chain_id=services.chain.profile.chain_id,
        fee_treasury=services.treasury_address,
        tokens=services.chain.tokens,
        rewards_distributor=services.chain.addresses.rewards_distributor
        if services.chain.addresses is not None
        else None,
    )


async def read_page(
    info: Info,
    wallet: WalletRef,
    *,
    first: int,
    after: Position | None,
    filter: ActivityFilter | None = None,
) -> ActivityPage:
    context = feed_context(info, wallet)
    kinds = token = None
    if filter is not None and filter.kinds:
        kinds = frozenset(DomainActivityKind(kind.value) for kind in filter.kinds)
    if filter is not None and filter.token is not None:
        token = next(t for t in context.tokens if t.kind.value == filter.token.value)
    async with info.context.services.db.session() as session:
        cursor, _ = await feed.index_position(session, context)
        return await feed.activity_page(
            session, context, first=first, after=after, kinds=kinds, token=token, as_of_block=cursor
        )


async def wallet_activity_page(
    info: Info, wallet: WalletRef, *, first: int, after: str | None, filter: ActivityFilter | None
) -> ActivityConnection:
    require_page_size(first)
    page = await read_page(
        info, wallet, first=first, after=decode_position(after) if after else None, filter=filter
    )
    tokens = info.context.services.chain.tokens
    edges = [
        ActivityEdge(
            cursor=encode_position(item.position), node=ActivityItem.from_view(item, tokens=tokens)
        )
        for item in page.items
    ]
    return ActivityConnection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=page.has_next_page, end_cursor=edges[-1].cursor if edges else None
        ),
    )


async def wallet_activity(info: Info) -> AsyncGenerator[ActivityItem, None]:
    """Each new or changed item among the signed-in wallet's newest ``WALLET_ACTIVITY_WINDOW``,
    oldest first, read every ``WALLET_ACTIVITY_POLL_SECONDS``; what is there when it starts is
    not pushed (the app reads the feed first)."""
    account = await info.context.account(Scope.WALLET_READ)
    wallet = WalletRef(id=account.wallet.id, address=account.wallet.address)
    tokens = info.context.services.chain.tokens
    seen: dict[str, ActivityItemView] | None = None
    while True:
        page = await read_page(info, wallet, first=WALLET_ACTIVITY_WINDOW, after=None)
        if seen is not None:
            for item in reversed(page.items):
                before = seen.get(item.id)
                if before is None or _changed(before, item):
                    yield ActivityItem.from_view(item, tokens=tokens)
        seen = {item.id: item for item in page.items}
        await asyncio.sleep(WALLET_ACTIVITY_POLL_SECONDS)


def _changed(before: ActivityItemView, now: ActivityItemView) -> bool:
    return (before.status, before.kind, before.tx_hash, before.block_number, before.raw) != (
        now.status,
        now.kind,
        now.tx_hash,
        now.block_number,
        now.raw,
    )


async def wallet_balances(info: Info, wallet: WalletRef) -> IndexedBalances:
    async with info.context.read_session() as session:
        return await indexed_balances(session, feed_context(info, wallet))


async def balances_of(info: Info, wallet: WalletRef, indexed: IndexedBalances) -> list[Balance]:
    """Every token's balance from the index; the native token's read from the node at the
    index's block (once per block), or 0 before anything is indexed."""
    chain = info.context.services.chain
    balances = []
    for token in chain.tokens:
        if token.address is None:
            raw = 0
            if indexed.as_of_hash is not None:
                raw = await chain.native_balance(wallet.address, block_hash=indexed.as_of_hash)
            balances.append(Balance.from_index(token, raw, pending=0))
            continue
        balances.append(
            Balance.from_index(
                token,
                indexed.raw.get(token.address.lower(), 0),
                pending=indexed.pending.get(token.address.lower(), 0),
            )
        )
    return balances


async def is_stale(info: Info, indexed: IndexedBalances) -> bool:
    if indexed.as_of_block is None:
        return True
    head = await info.context.services.chain.head_block()
    return head - indexed.as_of_block > info.context.services.settings.indexer_stale_blocks
