"""Reorganisations: anvil replaces the last blocks (``anvil_reorg``); the indexer finds the
fork point, forgets what the dropped blocks held and reads the new ones."""

from __future__ import annotations

from eth_account import Account

from indexer.models import TransferStatus
from tests.support.indexer import OUTSIDERS, IndexerStack

OVPP = 10**18
CONFIRMATIONS = 5


async def test_a_reorg_of_depth_3_drops_a_transfer_and_a_reincluded_one_comes_back_once(
    indexer_stack: IndexerStack,
) -> None:
    stack = indexer_stack
    wallet = await stack.new_wallet("dana")
    for key in OUTSIDERS[:2]:
        stack.mint(Account.from_key(key).address, 100 * OVPP)
    stack.mint(wallet, 10 * OVPP)  # deep enough to outlive the reorganisation
    stack.rpc("anvil_mine", hex(CONFIRMATIONS))
    fork_point = stack.head()
    dropped = stack.send_raw(stack.signed_transfer(OUTSIDERS[0], wallet, 5 * OVPP))
    reincluded_raw = stack.signed_transfer(OUTSIDERS[1], wallet, 7 * OVPP)
    reincluded = stack.send_raw(reincluded_raw)
    stack.rpc("anvil_mine", hex(1))
    assert stack.head() == fork_point + 3
    old_block = stack.web3.eth.get_transaction_receipt(reincluded)["blockHash"]

    indexer = stack.indexer(relayer_confirmations=CONFIRMATIONS)
    await stack.catch_up(indexer)
    rows = {row.tx_hash: row for row in await stack.indexed()}
    assert {dropped, reincluded} <= rows.keys()
    assert rows[dropped].status == rows[reincluded].status == TransferStatus.PENDING
    assert await stack.indexed_balance(wallet) == stack.balance_of(wallet) == 22 * OVPP

    # The last three blocks are replaced: the first transfer is in none of the new ones, the
    # second is included again, in the second new block.
    stack.rpc("anvil_reorg", 3, [[reincluded_raw, 1]])
    assert stack.head() == fork_point + 3
    new_block = stack.web3.eth.get_transaction_receipt(reincluded)["blockHash"]
    assert new_block != old_block
    await stack.catch_up(indexer)
    assert indexer.rollbacks == 1
    rows_after = await stack.indexed()
    assert [row.tx_hash for row in rows_after].count(reincluded) == 1
    assert dropped not in {row.tx_hash for row in rows_after}
    (again,) = [row for row in rows_after if row.tx_hash == reincluded]
    assert again.block_hash == "0x" + new_block.hex()
    assert again.status == TransferStatus.PENDING
    assert await stack.indexed_balance(wallet) == stack.balance_of(wallet) == 17 * OVPP
    assert {(row.tx_hash, row.log_index) for row in rows_after} == stack.transfers_touching(
        {wallet}
    )

    # Deep enough, it is confirmed; the dropped one never comes back.
    stack.rpc("anvil_mine", hex(CONFIRMATIONS))
    await stack.catch_up(indexer)
    final = await stack.indexed()
    assert [row.tx_hash for row in final].count(reincluded) == 1
    assert dropped not in {row.tx_hash for row in final}
    assert {row.status for row in final} == {TransferStatus.CONFIRMED}
    assert await stack.indexed_balance(wallet) == stack.balance_of(wallet) == 17 * OVPP
    await indexer.close()


async def test_a_chain_rolled_back_below_the_cursor_is_read_again(
    indexer_stack: IndexerStack,
) -> None:
    """``evm_revert`` leaves the node's chain shorter than the index: the cursor's block is gone,
    the indexer rolls back to the fork point and reads the blocks that replace it."""
    stack = indexer_stack
    wallet = await stack.new_wallet("erin")
    stack.mint(wallet, OVPP)
    snapshot = stack.rpc("evm_snapshot")
    gone = stack.mint(wallet, 2 * OVPP)
    stack.rpc("anvil_mine", hex(2))
    indexer = stack.indexer()
    await stack.catch_up(indexer)
    assert gone in {row.tx_hash for row in await stack.indexed()}

    assert stack.rpc("evm_revert", snapshot) is True
    replacement = stack.mint(wallet, 4 * OVPP)
    await stack.catch_up(indexer)
    hashes = [row.tx_hash for row in await stack.indexed()]
    assert gone not in hashes and hashes.count(replacement) == 1
    assert await stack.indexed_balance(wallet) == stack.balance_of(wallet) == 5 * OVPP
    await indexer.close()
