"""A node in trouble: while it is down the indexer backs off (it does not hammer it) and then
resumes with nothing missing; a range the node refuses (too many results) is halved until the
node answers."""

from __future__ import annotations

import asyncio
import time

from eth_account import Account

from indexer.follow import CommittedRange
from tests.support.indexer import IndexerStack
from tests.support.node_proxy import TroubledNode

OVPP = 10**18


async def _run_until_caught_up(stack: IndexerStack, indexer_run: asyncio.Task[None]) -> None:
    deadline = time.monotonic() + 60
    while True:
        cursor = await stack.cursor()
        if cursor is not None and cursor.last_block == stack.head():
            return
        assert not indexer_run.done(), indexer_run
        assert time.monotonic() < deadline, f"cursor {cursor}, head {stack.head()}"
        await asyncio.sleep(0.02)


async def test_the_indexer_backs_off_while_the_node_is_down_then_resumes(
    indexer_stack: IndexerStack,
) -> None:
    stack = indexer_stack
    wallet = await stack.new_wallet("frank")
    stack.mint(wallet, OVPP)
    with TroubledNode(upstream=stack.chain.rpc_url) as node:
        node.down = True
        indexer = stack.indexer(
            rpc_url=node.url, indexer_poll_seconds=0.05, indexer_backoff_max_seconds=0.4
        )
        stop = asyncio.Event()
        task = asyncio.create_task(indexer.run(stop))
        try:
            await asyncio.sleep(2.0)
            # Without backoff: a round every 0.05 s, 40 of them; with it: 0.1, 0.2, 0.4, 0.4 …
            assert 2 <= node.requests_while_down <= 10, node.requests_while_down
            stack.mint(wallet, 2 * OVPP)
            node.down = False
            await _run_until_caught_up(stack, task)
        finally:
            stop.set()
            await task
    rows = await stack.indexed()
    assert {(row.tx_hash, row.log_index) for row in rows} == stack.transfers_touching({wallet})
    assert await stack.indexed_balance(wallet) == stack.balance_of(wallet) == 3 * OVPP


async def test_a_range_the_node_refuses_is_halved_until_it_answers(
    indexer_stack: IndexerStack,
) -> None:
    stack = indexer_stack
    wallet = await stack.new_wallet("grace")
    await stack.mint_many([wallet, Account.create().address] * 20, OVPP, per_block=1)
    ranges: list[CommittedRange] = []
    with TroubledNode(upstream=stack.chain.rpc_url) as node:
        node.max_log_blocks = 5
        indexer = stack.indexer(rpc_url=node.url, on_commit=ranges.append, indexer_block_range=64)
        stop = asyncio.Event()
        task = asyncio.create_task(indexer.run(stop))
        try:
            await _run_until_caught_up(stack, task)
        finally:
            stop.set()
            await task
    assert node.refused_ranges >= 4  # 64, 32, 16, 8 blocks refused, then 4 answered
    assert max(committed.last - committed.first + 1 for committed in ranges) <= 5
    rows = await stack.indexed()
    assert {(row.tx_hash, row.log_index) for row in rows} == stack.transfers_touching({wallet})
    assert len(rows) == 20
