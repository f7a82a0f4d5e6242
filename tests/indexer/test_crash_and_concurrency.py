"""Crash safety and concurrency: an ``ovpp-wallet indexer`` killed with SIGKILL in the middle of
its backfill resumes with no gap and no duplicate; two indexers on one database never both write
a range (each range is written once, whoever wrote it)."""

from __future__ import annotations

import asyncio
import itertools
import time

from eth_account import Account

from indexer.follow import CommittedRange
from tests.support.indexer import IndexerStack

OVPP = 10**18
WALLETS = 8
MINTS = 240
WAIT_SECONDS = 90.0


async def _busy_chain(stack: IndexerStack) -> set[str]:
    """``MINTS`` blocks, three in four minting to a custodial wallet, the rest to strangers:
    returns the wallets' addresses."""
    wallets = [await stack.new_wallet(f"crash-{index}") for index in range(WALLETS)]
    strangers = [Account.create().address for _ in range(4)]
    recipients = [
        strangers[number % 4] if number % 4 == 3 else wallets[number % WALLETS]
        for number in range(MINTS)
    ]
    await stack.mint_many(recipients, OVPP)
    return set(wallets)


async def _wait_for_cursor(stack: IndexerStack, at_least: int, process: object) -> int:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        cursor = await stack.cursor()
        if cursor is not None and cursor.last_block >= at_least:
            return cursor.last_block
        assert getattr(process, "running", True), getattr(process, "log_tail", lambda: "")()
        assert time.monotonic() < deadline, f"cursor {cursor} never reached {at_least}"
        await asyncio.sleep(0.005)


async def test_an_indexer_killed_mid_backfill_resumes_with_no_gap_and_no_duplicate(
    indexer_stack: IndexerStack,
) -> None:
    stack = indexer_stack
    wallets = await _busy_chain(stack)
    head = stack.head()
    expected = stack.transfers_touching(wallets)
    assert len(expected) == MINTS * 3 // 4
    settings = {
        "OVPP_INDEXER_BLOCK_RANGE": "2",
        "OVPP_INDEXER_LEASE_SECONDS": "1",  # the killed process's lease passes on quickly
        "OVPP_INDEXER_POLL_SECONDS": "0.05",
    }
    with stack.processes(**settings) as processes:
        killed_at = []
        for fraction in (0.2, 0.5, 0.8):
            process = processes.start(f"killed-{fraction}")
            killed_at.append(await _wait_for_cursor(stack, int(head * fraction), process))
            process.kill()  # SIGKILL: whatever range it was writing is rolled back
        last = processes.start("last")
        await _wait_for_cursor(stack, head, last)
        assert last.stop() == 0, processes.logs()
        assert not processes.errors_logged(), processes.logs()
    assert all(block < head for block in killed_at), killed_at

    rows = await stack.indexed()
    assert len(rows) == len(expected)  # no duplicate
    assert {(row.tx_hash, row.log_index) for row in rows} == expected  # no gap
    for wallet in wallets:
        assert await stack.indexed_balance(wallet) == stack.balance_of(wallet)


async def test_two_indexers_on_one_database_write_each_range_once(
    indexer_stack: IndexerStack,
) -> None:
    """With a lease so short that both indexers take it round after round, the cursor's
    compare-and-set still lets only one write each range."""
    stack = indexer_stack
    wallets = await _busy_chain(stack)
    head = stack.head()
    written: dict[str, list[CommittedRange]] = {"a": [], "b": []}
    indexers = [
        stack.indexer(
            name,
            on_commit=written[name].append,
            indexer_block_range=3,
            indexer_lease_seconds=0.001,
            indexer_poll_seconds=0.01,
        )
        for name in written
    ]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(indexer.run(stop)) for indexer in indexers]
    try:
        await _wait_for_cursor(stack, head, object())
    finally:
        stop.set()
        await asyncio.gather(*tasks)

    ranges = sorted(
        (committed.first, committed.last) for log in written.values() for committed in log
    )
    assert all(written.values()), "both indexers wrote ranges"
    assert ranges[0][0] == 0 and ranges[-1][1] == head
    for (_, previous_last), (first, _) in itertools.pairwise(ranges):
        assert first == previous_last + 1, f"a range written twice or skipped: {ranges}"
    rows = await stack.indexed()
    assert len(rows) == len(stack.transfers_touching(wallets))
    assert {(row.tx_hash, row.log_index) for row in rows} == stack.transfers_touching(wallets)
