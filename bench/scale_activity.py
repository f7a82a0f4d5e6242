"""Scale of the indexed reads: ``balances`` and the ``activity`` feed at 1k and at 1M customers.

    .venv/bin/python -m bench.scale_activity                       # 1k, then 1M × 10 rows
    .venv/bin/python -m bench.scale_activity --customers 1000000 --rows-per-customer 3

For each scale, a throwaway PostgreSQL database (127.0.0.1:5432, user postgres) migrated to
head is filled with COPY (``bench.scale_load``), then, in this process on uvloop, the functions
the GraphQL resolvers call are timed one call after another, each in its own session from the
product's ``core.db.Database`` as the resolvers open them: ``activity.balances.indexed_balances``
(``Wallet.balances``; the native balance the resolver adds from the node is not in it) and
``activity.feed.index_position`` + ``activity_page`` (``Wallet.activity``, first 20), for random
customers (first page) and random heavy wallets (a deep page: after their 400th newest incoming
transfer). At the largest scale every SQL statement of one call of each is shown with
EXPLAIN (ANALYZE, BUFFERS). Each database is dropped afterwards."""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import uvloop
from sqlalchemy import event, text

from activity.balances import indexed_balances
from activity.feed import FeedContext, WalletRef, activity_page, index_position
from activity.repository import CHAIN_RANK, Position
from bench.harness import DATABASE_PREFIX, POSTGRES_ADMIN_URL, percentile, say
from bench.scale_load import (
    CHAIN_ID,
    OVPP,
    STABLECOIN,
    TREASURY,
    address_of,
    heavy_count,
    load,
    wallet_id,
)
from chain.tokens import TokenInfo, TokenKind
from core.db import Database
from devsupport.databases import fresh_database

PAGE = 20
DEEP = 400
TOKENS = [
    TokenInfo(TokenKind.OVPP, "OVPP", "OpenVPP", 18, OVPP),
    TokenInfo(TokenKind.STABLECOIN, "USDX", "Stable", 6, STABLECOIN),
    TokenInfo(TokenKind.NATIVE, "ETH", "Ether", 18, None),
]


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--rows-per-customer", type=int, default=10)
    parser.add_argument("--samples", type=int, default=2_000)
    parser.add_argument("--explain-to", type=Path, default=None)
    return parser.parse_args(argv)


def context_of(index: int) -> FeedContext:
    wallet = WalletRef(id=wallet_id(index), address=address_of(index))
    return FeedContext(wallet=wallet, chain_id=CHAIN_ID, fee_treasury=TREASURY, tokens=TOKENS)


async def read_balances(db: Database, context: FeedContext, _after: Position | None) -> Any:
    async with db.session() as session:
        return await indexed_balances(session, context)


async def read_page(db: Database, context: FeedContext, after: Position | None) -> Any:
    async with db.session() as session:
        as_of_block, _ = await index_position(session, context)
        page = await activity_page(
            session,
            context,
            first=PAGE,
            after=after,
            kinds=None,
            token=None,
            as_of_block=as_of_block,
        )
        assert len(page.items) == PAGE or after is None, "a deep page must be full"
        return page


async def deep_positions(db: Database, indexes: list[int]) -> dict[int, Position]:
    """Each heavy wallet's position after its ``DEEP``-th newest incoming transfer (untimed)."""
    positions = {}
    async with db.session() as session:
        for index in indexes:
            row = (
                await session.execute(
                    text(
                        "SELECT block_timestamp, id FROM token_transfers WHERE to_address = :a "
                        "ORDER BY block_timestamp DESC, id DESC OFFSET :n LIMIT 1"
                    ),
                    {"a": address_of(index), "n": DEEP},
                )
            ).one()
            positions[index] = Position(at=row[0], rank=CHAIN_RANK, key=str(row[1]))
    return positions


Read = Callable[[Database, FeedContext, Position | None], Awaitable[Any]]


async def timed(
    pair: list[tuple[Database, int]], read: Read, heavy: bool, samples: int
) -> list[list[float]]:
    """``samples`` calls of ``read`` at each scale, alternating between them call by call, so
    the load of the shared machine falls on both alike."""
    plans = []
    for db, customers in pair:
        rng = random.Random(customers + heavy)
        count = heavy_count(customers) if heavy else customers
        indexes = [rng.randrange(count) for _ in range(samples)]
        positions = await deep_positions(db, sorted(set(indexes))) if heavy else {}
        plans.append([(context_of(i), positions.get(i)) for i in indexes])
    for (db, _), calls in zip(pair, plans, strict=True):
        for context, after in calls[:50]:  # warm the pool and the plans
            await read(db, context, after)
    seconds: list[list[float]] = [[] for _ in pair]
    for n in range(samples):
        for (db, _), calls, spent in zip(pair, plans, seconds, strict=True):
            context, after = calls[n]
            started = time.perf_counter()
            await read(db, context, after)
            spent.append(time.perf_counter() - started)
    return seconds


async def measure(urls: list[tuple[str, int]], samples: int) -> dict[str, list[list[float]]]:
    pair = [(Database(url, pool_size=5), customers) for url, customers in urls]
    try:
        return {
            "balances": await timed(pair, read_balances, False, samples),
            "activity, first page": await timed(pair, read_page, False, samples),
            "activity, deep page": await timed(pair, read_page, True, samples),
        }
    finally:
        for db, _ in pair:
            await db.dispose()


async def explain(url: str, customers: int) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of every statement one call of each read sends."""
    db = Database(url, pool_size=2)
    sent: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    heavy = heavy_count(customers) // 2
    positions = await deep_positions(db, [heavy])
    sections = []
    raw = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        for name, read, index, after in (
            ("balances", read_balances, customers // 2, None),
            ("activity, first page", read_page, customers // 2, None),
            ("activity, deep page", read_page, heavy, positions[heavy]),
        ):
            event.listen(db.engine.sync_engine, "before_cursor_execute", record)
            await read(db, context_of(index), after)
            event.remove(db.engine.sync_engine, "before_cursor_execute", record)
            sections.append(f"#### {name}\n")
            for statement, parameters in sent:
                if statement.lstrip().upper().startswith(("SELECT", "WITH")):
                    rows = await raw.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", *parameters)
                    plan = "\n".join(row[0] for row in rows)
                    sections.append(f"```\n{statement}\n\n{plan}\n```\n")
            sent.clear()
    finally:
        await raw.close()
        await db.dispose()
    return "\n".join(sections)


async def loaded(url: str, customers: int, rows_per_customer: int) -> None:
    say(f"loading {customers:,} customers × {rows_per_customer} transfers (COPY)")
    started = time.monotonic()
    done = await load(url, customers=customers, rows_per_customer=rows_per_customer)
    say(
        f"loaded {done.transfers:,} transfers, {done.jobs:,} jobs in "
        f"{time.monotonic() - started:.0f} s "
        f"({', '.join(f'{k} {v:.0f} s' for k, v in done.seconds.items())}); "
        f"database {await _database_size(url)}"
    )


async def _database_size(url: str) -> str:
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return str(
            await connection.fetchval("SELECT pg_size_pretty(pg_database_size(current_database()))")
        )
    finally:
        await connection.close()


async def run(args: argparse.Namespace) -> int:
    say(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    async with (
        fresh_database(
            "postgresql",
            directory=Path(tempfile.gettempdir()),
            admin_url=POSTGRES_ADMIN_URL,
            prefix=DATABASE_PREFIX,
        ) as small,
        fresh_database(
            "postgresql",
            directory=Path(tempfile.gettempdir()),
            admin_url=POSTGRES_ADMIN_URL,
            prefix=DATABASE_PREFIX,
        ) as large,
    ):
        await loaded(small, args.small, args.rows_per_customer)
        await loaded(large, args.customers, args.rows_per_customer)
        say(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        figures = await measure([(small, args.small), (large, args.customers)], args.samples)
        if args.explain_to is not None:
            args.explain_to.write_text(await explain(large, args.customers))
            say(f"plans written to {args.explain_to}")
    failed = 0
    for name, (at_small, at_large) in figures.items():
        for customers, seconds in ((args.small, at_small), (args.customers, at_large)):
            say(
                f"  {customers:>9,} {name:<22} p50 {percentile(seconds, 0.5) * 1e3:6.2f} ms  "
                f"p99 {percentile(seconds, 0.99) * 1e3:6.2f} ms  ({len(seconds)} calls)"
            )
        ratio = percentile(at_large, 0.99) / percentile(at_small, 0.99)
        failed += ratio > 1.2
        verdict = "holds" if ratio <= 1.2 else "DOES NOT HOLD"
        say(f"{name}: p99 at {args.customers:,} / p99 at {args.small:,} = {ratio:.2f} ({verdict})")
    say(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    os.chdir(Path(__file__).resolve().parent.parent)
    raise SystemExit(uvloop.run(run(args)))


if __name__ == "__main__":
    main()
