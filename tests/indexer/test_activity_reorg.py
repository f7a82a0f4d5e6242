"""A reorganisation seen from the wallet: a dropped incoming transfer leaves its feed and its
indexed balance, a re-included one is in both once."""

from __future__ import annotations

from eth_account import Account
from sqlalchemy import select

from activity.balances import indexed_balances
from activity.feed import FeedContext, WalletRef, activity_page
from activity.items import ActivityKind
from tests.support.indexer import OUTSIDERS, IndexerStack
from wallet.models import Wallet

OVPP = 10**18


async def feed_and_balance(stack: IndexerStack, wallet: WalletRef) -> tuple[list[str], int]:
    """(tx hash of each RECEIVED item, newest first; the indexed OVPP balance)."""
    context = FeedContext(
        wallet=wallet,
        chain_id=stack.chain_id,
        fee_treasury=stack.services.treasury_address,
        tokens=stack.services.chain.tokens,
    )
    async with stack.services.db.session() as session:
        balances = await indexed_balances(session, context)
        page = await activity_page(
            session,
            context,
            first=50,
            after=None,
            kinds=None,
            token=None,
            as_of_block=balances.as_of_block,
        )
    assert {item.kind for item in page.items} == {ActivityKind.RECEIVED}
    return [str(item.tx_hash) for item in page.items], balances.raw.get(stack.ovpp.lower(), 0)


async def test_a_reorg_removes_a_dropped_item_and_its_balance_and_keeps_a_reincluded_one_once(
    indexer_stack: IndexerStack,
) -> None:
    stack = indexer_stack
    address = await stack.new_wallet("fay")
    async with stack.services.db.session() as session:
        wallet_id = (
            await session.execute(select(Wallet.id).where(Wallet.address == address))
        ).scalar_one()
    wallet = WalletRef(id=wallet_id, address=address)
    for key in OUTSIDERS[:2]:
        stack.mint(Account.from_key(key).address, 100 * OVPP)
    minted = stack.mint(address, 10 * OVPP)
    stack.rpc("anvil_mine", hex(5))
    dropped = stack.send_raw(stack.signed_transfer(OUTSIDERS[0], address, 5 * OVPP))
    reincluded_raw = stack.signed_transfer(OUTSIDERS[1], address, 7 * OVPP)
    reincluded = stack.send_raw(reincluded_raw)
    stack.rpc("anvil_mine", hex(1))
    indexer = stack.indexer(relayer_confirmations=5)
    await stack.catch_up(indexer)
    hashes, balance = await feed_and_balance(stack, wallet)
    assert set(hashes) == {minted, dropped, reincluded} and len(hashes) == 3
    assert balance == stack.balance_of(address) == 22 * OVPP

    stack.rpc("anvil_reorg", 3, [[reincluded_raw, 1]])
    await stack.catch_up(indexer)
    hashes, balance = await feed_and_balance(stack, wallet)
    assert hashes == [reincluded, minted]
    assert balance == stack.balance_of(address) == 17 * OVPP
    await indexer.close()
