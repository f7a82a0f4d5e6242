"""The indexer backfills every transfer of the served tokens that touches a custodial wallet
(or the fee treasury), in bounded ranges, and a new indexer resumes from the persisted cursor."""

from __future__ import annotations

from eth_account import Account

from chain.logs import checksummed
from indexer.follow import CommittedRange
from indexer.models import TransferStatus
from tests.support.indexer import OUTSIDERS, IndexerStack

OVPP = 10**18


async def test_backfill_keeps_every_transfer_touching_a_wallet_and_resumes_from_the_cursor(
    indexer_stack: IndexerStack,
) -> None:
    stack = indexer_stack
    alice = await stack.new_wallet("alice")
    bob = await stack.new_wallet("bob")
    outsider = Account.from_key(OUTSIDERS[0]).address
    stranger = Account.create().address
    treasury = checksummed(stack.services.treasury_address.lower())

    stack.mint(alice, 100 * OVPP)  # in: from the zero address
    stack.mint(outsider, 50 * OVPP)  # touches no wallet: not kept
    stack.send_raw(stack.signed_transfer(OUTSIDERS[0], bob, 7 * OVPP))  # in, from outside
    stack.send_from(alice, stranger, 3 * OVPP)  # out, to outside
    stack.send_from(alice, bob, 2 * OVPP)  # between two wallets: one row, both sides
    stack.mint(treasury, 1 * OVPP)  # the fee treasury is watched too
    stack.rpc("anvil_mine", hex(5))
    watched = {alice, bob, treasury}
    expected = stack.transfers_touching(watched)
    assert len(expected) == 5

    ranges: list[CommittedRange] = []
    first = stack.indexer("first", on_commit=ranges.append, indexer_block_range=3)
    await stack.catch_up(first)
    await first.close()

    rows = await stack.indexed()
    assert {(row.tx_hash, row.log_index) for row in rows} == expected
    assert len(rows) == len(expected)
    assert all(last - first_ + 1 <= 3 for first_, last, *_ in _spans(ranges))
    assert _contiguous(ranges, start=0, end=stack.head())
    assert await stack.indexed_balance(alice) == stack.balance_of(alice) == 95 * OVPP
    assert await stack.indexed_balance(bob) == stack.balance_of(bob) == 9 * OVPP
    between = next(row for row in rows if row.from_address == alice and row.to_address == bob)
    assert between.value == 2 * OVPP
    block = stack.web3.eth.get_block(between.block_number)
    assert between.block_hash == "0x" + block["hash"].hex()
    assert between.block_timestamp.timestamp() == block["timestamp"]
    assert {row.status for row in rows} == {TransferStatus.CONFIRMED}  # 1 confirmation
    cursor = await stack.cursor()
    assert cursor is not None and cursor.last_block == stack.head()

    # More blocks; a new indexer (a restarted process) reads only what follows the cursor.
    stack.mint(bob, 4 * OVPP)
    stack.send_from(bob, alice, 1 * OVPP)
    resumed: list[CommittedRange] = []
    second = stack.indexer("second", on_commit=resumed.append)
    await stack.catch_up(second)
    await second.close()
    assert resumed[0].first == cursor.last_block + 1
    rows = await stack.indexed()
    assert {(row.tx_hash, row.log_index) for row in rows} == stack.transfers_touching(watched)
    assert len(rows) == len(expected) + 2
    assert await stack.indexed_balance(bob) == stack.balance_of(bob) == 12 * OVPP


async def test_transfers_stay_pending_until_deep_enough(indexer_stack: IndexerStack) -> None:
    stack = indexer_stack
    wallet = await stack.new_wallet("carol")
    stack.mint(wallet, OVPP)
    indexer = stack.indexer(relayer_confirmations=3)
    await stack.catch_up(indexer)
    (row,) = await stack.indexed()
    assert row.status == TransferStatus.PENDING  # 1 deep
    stack.rpc("anvil_mine", hex(1))
    await stack.catch_up(indexer)
    (row,) = await stack.indexed()
    assert row.status == TransferStatus.PENDING  # 2 deep
    stack.rpc("anvil_mine", hex(1))
    await stack.catch_up(indexer)
    (row,) = await stack.indexed()
    assert row.status == TransferStatus.CONFIRMED  # 3 deep
    await indexer.close()


def _spans(ranges: list[CommittedRange]) -> list[tuple[int, int]]:
    return [(committed.first, committed.last) for committed in ranges]


def _contiguous(ranges: list[CommittedRange], *, start: int, end: int) -> bool:
    """The ranges cover ``start``..``end`` once each, in order."""
    expected_first = start
    for first, last in _spans(ranges):
        if first != expected_first:
            return False
        expected_first = last + 1
    return expected_first == end + 1
