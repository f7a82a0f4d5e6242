"""The rows of ``bench.scale_activity``: customers with wallets, the indexed transfers between
them, their indexed balances, a share of relayed jobs (with their attempts) behind transfers
and a few failed ones, loaded with COPY (asyncpg ``copy_records_to_table``) into a migrated
PostgreSQL database.

Shape (the same at every scale): ``rows_per_customer`` transfers per customer; half of them go
to the 1 % "heavy" wallets (about 50 × as many items each: their deep pages), the other half to
a uniformly random customer; senders are uniform (5 % the treasury, as onramp deliveries); one
transfer in 100 is a relayed job's (``relay_transactions`` + ``relay_attempts``, mined, so the
feed joins it), one in 1,000 also leaves a failed job. Addresses, ids and hashes derive from
the row's number, so the measuring side finds them without reading the tables."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from bench.harness import say

CHAIN_ID = 31337
OVPP = "0x5fbdb2315678afecb367f032d93f642f64180aa3"
STABLECOIN = "0xe7f1725e7734ce288f8367e1bb143e90bb3f0512"
TREASURY = "0x" + "7e" * 20
RELAYER_KEY_ID = "00000000-0000-0000-0000-00000000beef"
TENANT_ID = "00000000-0000-0000-0000-00000000face"
START = datetime(2026, 1, 1, tzinfo=UTC)
ROWS_PER_BLOCK = 50
CHUNK = 200_000
AMOUNTS = [Decimal(10**15 * k) for k in range(1, 1001)]
HEAVY_SHARE = 0.01
JOB_EVERY = 100
FAILED_EVERY = 1_000
TRANSFER_COLUMNS = (
    "id chain_id token_address tx_hash log_index block_number block_hash block_timestamp "
    "from_address to_address value status indexed_at"
).split()
JOB_COLUMNS = (
    "id wallet_id customer_id idempotency_key request_fingerprint kind status token "
    "token_address to_address amount fee_token fee_amount sponsored forwarder_nonce "
    "forward_requests gas_limit relayer_key_id tx_hash attempts block_number created_at "
    "updated_at"
).split()


def customer_id(index: int) -> str:
    return f"00000000-0000-0000-0001-{index:012x}"


def wallet_id(index: int) -> str:
    return f"00000000-0000-0000-0002-{index:012x}"


def address_of(index: int) -> str:
    """A distinct, scattered address per customer (an odd multiplier is a bijection)."""
    return f"0x{(index * 0x9E3779B97F4A7C15F39CC0605CEDC8341082276B + 1) % 2**160:040x}"


def heavy_count(customers: int) -> int:
    return max(1, int(customers * HEAVY_SHARE))


@dataclass(frozen=True)
class Loaded:
    customers: int
    transfers: int
    jobs: int
    last_block: int
    seconds: dict[str, float]


def _customers(count: int) -> Iterator[tuple[Any, ...]]:
    for index in range(count):
        yield (customer_id(index), TENANT_ID, f"bench-{index}", None, START, "CUSTOMER")


def _wallets(count: int) -> Iterator[tuple[Any, ...]]:
    for index in range(count):
        yield (wallet_id(index), customer_id(index), address_of(index), b"k", b"d", "bench", START)


def _balances(count: int) -> Iterator[tuple[Any, ...]]:
    for index in range(count):
        yield (CHAIN_ID, address_of(index), OVPP, AMOUNTS[index % 1000], 1)
        if index % 2 == 0:
            yield (CHAIN_ID, address_of(index), STABLECOIN, AMOUNTS[index % 997], 1)


def _transfer_rows(customers: int, rows: int, jobs: list[tuple[Any, ...]]) -> Iterator[tuple]:
    """The transfers, oldest first; appends the relayed jobs behind some of them to ``jobs``."""
    rng = random.Random(18)
    heavy = heavy_count(customers)
    for number in range(1, rows + 1):
        sender = rng.randrange(customers)
        from_address = TREASURY if number % 20 == 0 else address_of(sender)
        recipient = rng.randrange(heavy) if number % 2 else rng.randrange(customers)
        if recipient == sender:
            recipient = (recipient + 1) % customers
        block = number // ROWS_PER_BLOCK
        at = START + timedelta(seconds=block * 2)
        tx_hash = f"0x{number:064x}"
        value = AMOUNTS[number % 1000]
        if number % JOB_EVERY == 1:  # never a treasury row (those are number % 20 == 0)
            jobs.append(_job(sender, number, tx_hash, address_of(recipient), value, block, at))
        if number % FAILED_EVERY == 0:
            jobs.append(_job(sender, -number, None, address_of(recipient), value, None, at))
        yield (
            number,
            CHAIN_ID,
            OVPP,
            tx_hash,
            0,
            block,
            f"0x{block:064x}",
            at,
            from_address,
            address_of(recipient),
            value,
            "CONFIRMED",
            at,
        )


def _job(
    sender: int, number: int, tx_hash: str | None, to: str, value: Decimal, block: Any, at: Any
) -> tuple[Any, ...]:
    status = "CONFIRMED" if tx_hash is not None else "FAILED"
    return (
        f"00000000-0000-0000-{'0003' if number > 0 else '0004'}-{abs(number):012x}",
        wallet_id(sender),
        customer_id(sender),
        f"key-{number}",
        "f" * 64,
        "TRANSFER",
        status,
        "OVPP",
        OVPP,
        to,
        value,
        "OVPP",
        AMOUNTS[0],
        False,
        abs(number),
        "[]",
        200_000,
        RELAYER_KEY_ID,
        tx_hash,
        1,
        block,
        at,
        at,
    )


async def _copy(
    connection: asyncpg.Connection, table: str, columns: list[str], rows: Iterator[tuple]
) -> int:
    total = 0
    while True:
        chunk = [row for _, row in zip(range(CHUNK), rows, strict=False)]
        if not chunk:
            return total
        await connection.copy_records_to_table(table, records=chunk, columns=columns)
        total += len(chunk)


async def _without_indexes(connection: asyncpg.Connection, table: str) -> list[str]:
    """Drop ``table``'s indexes and unique/primary constraints (nothing references it);
    returns the statements that put them back."""
    constraints = await connection.fetch(
        "SELECT conname, pg_get_constraintdef(oid) AS definition FROM pg_constraint "
        "WHERE conrelid = $1::regclass AND contype IN ('p', 'u')",
        table,
    )
    restore = [
        f"ALTER TABLE {table} ADD CONSTRAINT {c['conname']} {c['definition']}" for c in constraints
    ]
    for constraint in constraints:
        await connection.execute(f"ALTER TABLE {table} DROP CONSTRAINT {constraint['conname']}")
    indexes = await connection.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = $1", table
    )
    for index in indexes:
        await connection.execute(f"DROP INDEX {index['indexname']}")
    return restore + [index["indexdef"] for index in indexes]


WALLET_COLUMNS = "id customer_id address encrypted_private_key wrapped_data_key kek_id created_at"
ATTEMPT_COLUMNS = (
    "id relay_transaction_id tx_hash raw_transaction max_fee_per_gas max_priority_fee_per_gas "
    "created_at"
)


async def load(url: str, *, customers: int, rows_per_customer: int) -> Loaded:
    """COPY the rows into the migrated database at ``url`` (an asyncpg URL)."""
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    seconds: dict[str, float] = {}
    try:
        await connection.execute("SET session_replication_role = replica")  # no FK triggers
        await connection.execute("SET maintenance_work_mem = '512MB'")
        await _fixed_rows(connection)
        started = time.monotonic()
        await _people(connection, customers)
        seconds["customers, wallets, balances"] = time.monotonic() - started
        say(f"  {customers:,} customers, wallets, balances: {time.monotonic() - started:.0f} s")
        restore = await _without_indexes(connection, "token_transfers")
        started, jobs = time.monotonic(), []
        rows = customers * rows_per_customer
        made = _transfer_rows(customers, rows, jobs)
        transfers = await _copy(connection, "token_transfers", TRANSFER_COLUMNS, made)
        seconds["token_transfers COPY"] = time.monotonic() - started
        say(f"  {transfers:,} transfers copied: {seconds['token_transfers COPY']:.0f} s")
        started = time.monotonic()
        for statement in restore:
            await connection.execute(statement)
        seconds["token_transfers indexes"] = time.monotonic() - started
        say(f"  their indexes built: {seconds['token_transfers indexes']:.0f} s")
        started = time.monotonic()
        last_block = rows // ROWS_PER_BLOCK
        await _jobs_and_cursor(connection, jobs, last_block)
        await connection.execute("ANALYZE")
        seconds["jobs, attempts, ANALYZE"] = time.monotonic() - started
        return Loaded(customers, transfers, len(jobs), last_block, seconds)
    finally:
        await connection.close()


async def _people(connection: asyncpg.Connection, customers: int) -> None:
    customer_columns = "id tenant_id subject email created_at kind".split()
    await _copy(connection, "customers", customer_columns, _customers(customers))
    await _copy(connection, "wallets", WALLET_COLUMNS.split(), _wallets(customers))
    balance_columns = "chain_id address token_address balance last_block".split()
    await _copy(connection, "wallet_balances", balance_columns, _balances(customers))


async def _jobs_and_cursor(
    connection: asyncpg.Connection, jobs: list[tuple[Any, ...]], last_block: int
) -> None:
    await _copy(connection, "relay_transactions", JOB_COLUMNS, iter(jobs))
    attempts = (
        (job[0].replace("-0003-", "-0005-"), job[0], job[18], b"r", AMOUNTS[0], AMOUNTS[0], job[21])
        for job in jobs
        if job[18]  # a mined job's attempt; failed ones sent none
    )
    await _copy(connection, "relay_attempts", ATTEMPT_COLUMNS.split(), attempts)
    await connection.execute(
        "INSERT INTO indexer_cursors (chain_id, last_block, last_block_hash, updated_at) "
        "VALUES ($1, $2, $3, now())",
        CHAIN_ID,
        last_block,
        f"0x{last_block:064x}",
    )


async def _fixed_rows(connection: asyncpg.Connection) -> None:
    await connection.execute(
        "INSERT INTO tenants (id, slug, name, issuer, audience, created_at) "
        "VALUES ($1, 'scale-bench', 'Scale Bench Utility', 'https://bench.invalid', 'bench', "
        "now())",
        TENANT_ID,
    )
    await connection.execute(
        "INSERT INTO relayer_keys (id, slot, address, encrypted_private_key, wrapped_data_key, "
        "kek_id, next_nonce, enabled, created_at) VALUES ($1, 99, $2, 'k', 'd', 'bench', 0, "
        "true, now())",
        RELAYER_KEY_ID,
        "0x" + "5e" * 20,
    )
