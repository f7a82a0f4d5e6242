"""Catch-up of the chain indexer: how fast it backfills ``--logs`` ERC-20 ``Transfer`` logs.

    .venv/bin/python -m bench.indexer_catchup --db postgresql
    .venv/bin/python -m bench.indexer_catchup --db sqlite --block-range 100

Everything is fresh and thrown away: anvil (``--hardfork shanghai``, free port), the contracts,
the database (a throwaway PostgreSQL database on 127.0.0.1:5432 as user postgres, or a SQLite
file) and ``--wallets`` custodial wallets. The chain is filled first, untimed: OVPP mints from
the deployer (an unlocked anvil account), ``--logs-per-block`` to a block (automine off, one
``evm_mine`` per block), each to a custodial wallet except a ``--stranger-share`` of them.

Timed: the product's indexer (``indexer.follow.Indexer``, in this process on uvloop, as
``ovpp-wallet indexer`` runs it) from an empty index to the head: logs read per second, and the
CPU it took per log: this process, anvil, and the PostgreSQL backends. Checked afterwards: the
index holds exactly the kept transfers (one row each) and every wallet's indexed balance equals
``balanceOf`` on chain.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import uvloop
from eth_account import Account
from sqlalchemy import func, select, text

from api.container import Services
from bench.harness import (
    DATABASE_PREFIX,
    MINT_SELECTOR,
    POSTGRES_ADMIN_URL,
    CpuMeter,
    LocalStack,
    balance_of_call,
    local_chain,
    postgres_backends_of,
    read_uint_calls,
    say,
    with_descendants,
)
from chain.abi_words import address_word, uint_word
from chain.profiles import ANVIL_DEV_PRIVATE_KEY
from chain.rpc import JsonRpc, RpcError
from core.settings import load_settings
from devsupport.databases import fresh_database
from identity.models import Tenant
from identity.service import DEV_TENANT_SLUG, system_account
from indexer.follow import CommittedRange, Indexer
from indexer.models import TokenTransfer
from wallet.kms import LocalKeyEncryptionKey

DEPLOYER = Account.from_key(ANVIL_DEV_PRIVATE_KEY).address
SEND_BATCH = 500


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--logs", type=int, default=100_000)
    parser.add_argument("--logs-per-block", type=int, default=100)
    parser.add_argument("--wallets", type=int, default=1_000)
    parser.add_argument("--stranger-share", type=float, default=0.0)
    parser.add_argument("--block-range", type=int, default=2000)
    return parser.parse_args(argv)


async def fill_chain(rpc: JsonRpc, token: str, recipients: list[str], per_block: int) -> None:
    """One mint per recipient, ``per_block`` to a block."""
    await rpc.call("evm_setAutomine", False)
    nonce = int(await rpc.call("eth_getTransactionCount", DEPLOYER, "pending"), 16)
    for block_start in range(0, len(recipients), per_block):
        block = recipients[block_start : block_start + per_block]
        for start in range(0, len(block), SEND_BATCH):
            calls = [
                ("eth_sendTransaction", [mint_transaction(token, to, nonce + block_start + i)])
                for i, to in enumerate(block[start : start + SEND_BATCH], start)
            ]
            failed = [r for r in await rpc.batch(calls) if isinstance(r, RpcError)]
            if failed:
                raise RuntimeError(f"sending failed: {failed[0].message}")
        await rpc.call("evm_mine")
        if (block_start // per_block) % 100 == 99:
            say(f"  {block_start + len(block):,} mints mined")
    await rpc.call("evm_setAutomine", True)


def mint_transaction(token: str, to: str, nonce: int) -> dict[str, str]:
    data = MINT_SELECTOR + address_word(to) + uint_word(10**18)
    return {
        "from": DEPLOYER,
        "to": token,
        "data": "0x" + data.hex(),
        "gas": hex(90_000),
        "nonce": hex(nonce),
    }


async def make_wallets(services: Services, count: int) -> list[str]:
    async with services.db.session() as session:
        tenant_id = (
            await session.execute(select(Tenant.id).where(Tenant.slug == DEV_TENANT_SLUG))
        ).scalar_one()
    addresses = []
    for index in range(count):
        account = await system_account(
            services.db, tenant_id=tenant_id, name=f"bench-{index}", keyring=services.keyring
        )
        addresses.append(account.wallet.address)
    return addresses


async def catch_up(services: Services, database_url: str, anvil_pid: int) -> dict[str, float]:
    ranges: list[CommittedRange] = []
    indexer = Indexer(services, name="bench-indexer", on_commit=ranges.append)
    head = int(await indexer.rpc.call("eth_blockNumber"), 16)
    pids = {pid: "anvil" for pid in with_descendants(anvil_pid)}
    if not services.db.is_sqlite:
        async with services.db.session() as session:  # a pooled connection: its backend exists
            await session.execute(text("SELECT 1"))
        pids.update({pid: "pg" for pid in postgres_backends_of(database_url.rsplit("/", 1)[1])})
    meter = CpuMeter()
    meter.start(pids)
    started, cpu_started = time.monotonic(), time.process_time()
    while indexer.last_block is None or indexer.last_block < head:
        await indexer.tick()
    seconds, cpu = time.monotonic() - started, time.process_time() - cpu_started
    used = meter.stop(pids)
    await indexer.close()
    logs = sum(committed.logs_read for committed in ranges)
    return {
        "seconds": seconds,
        "logs": logs,
        "kept": sum(committed.transfers_stored for committed in ranges),
        "ranges": len(ranges),
        "indexer_cpu": cpu,
        "anvil_cpu": used.get("anvil", 0.0),
        "pg_cpu": used.get("pg", 0.0),
    }


async def verify(services: Services, stack: LocalStack, wallets: list[str], kept: int) -> list[str]:
    problems = []
    async with services.db.session() as session:
        rows = (await session.execute(select(func.count()).select_from(TokenTransfer))).scalar_one()
        distinct = (
            await session.execute(
                select(func.count()).select_from(
                    select(TokenTransfer.tx_hash, TokenTransfer.log_index).distinct().subquery()
                )
            )
        ).scalar_one()
        incoming = dict(
            (
                await session.execute(
                    select(TokenTransfer.to_address, func.count()).group_by(
                        TokenTransfer.to_address
                    )
                )
            ).all()
        )
    if rows != kept or distinct != rows:
        problems.append(f"{rows} rows ({distinct} distinct) for {kept} kept transfers")
    rpc = JsonRpc(stack.chain.rpc_url)
    try:
        on_chain = await read_uint_calls(
            rpc, [balance_of_call(stack.contracts.ovpp_token, wallet) for wallet in wallets]
        )
    finally:
        await rpc.close()
    for wallet, balance in zip(wallets, on_chain, strict=True):
        if incoming.get(wallet, 0) * 10**18 != balance:
            problems.append(f"{wallet}: indexed {incoming.get(wallet, 0)} mints, holds {balance}")
    return problems


async def run(args: argparse.Namespace) -> int:
    with local_chain() as stack:
        async with fresh_database(
            args.db, directory=stack.workdir, admin_url=POSTGRES_ADMIN_URL, prefix=DATABASE_PREFIX
        ) as database_url:
            settings = load_settings(
                environment="development",
                data_dir=stack.workdir / "data",
                database_url=database_url,
                rpc_url=stack.chain.rpc_url,
                address_book=stack.address_book_path,
                kek=LocalKeyEncryptionKey.generate_base64(),
                indexer_block_range=args.block_range,
                rpc_timeout_seconds=120,
            )
            services = await Services.start(settings)
            try:
                return await measure(args, services, stack, database_url)
            finally:
                await services.close()


async def measure(
    args: argparse.Namespace, services: Services, stack: LocalStack, database_url: str
) -> int:
    say(f"making {args.wallets:,} custodial wallets")
    wallets = await make_wallets(services, args.wallets)
    strangers = [Account.create().address for _ in range(100)]
    every = round(1 / args.stranger_share) if args.stranger_share > 0 else 0
    recipients = [
        strangers[n % 100] if every and n % every == 0 else wallets[n % len(wallets)]
        for n in range(args.logs)
    ]
    say(f"minting {args.logs:,} times, {args.logs_per_block} to a block")
    rpc = JsonRpc(stack.chain.rpc_url, timeout_seconds=600)
    try:
        await fill_chain(rpc, stack.contracts.ovpp_token, recipients, args.logs_per_block)
    finally:
        await rpc.close()
    assert stack.chain.pid is not None
    say(f"indexing (ranges of {args.block_range} blocks, {args.db})")
    figures = await catch_up(services, database_url, stack.chain.pid)
    problems = await verify(services, stack, wallets, int(figures["kept"]))
    logs = figures["logs"]
    say(
        f"{logs:,.0f} logs read ({figures['kept']:,.0f} kept) in {figures['ranges']:.0f} ranges, "
        f"{figures['seconds']:.1f} s: {logs / figures['seconds']:,.0f} logs/s; CPU per log: "
        f"indexer {figures['indexer_cpu'] / logs * 1e6:.0f} µs, anvil "
        f"{figures['anvil_cpu'] / logs * 1e6:.0f} µs, pg {figures['pg_cpu'] / logs * 1e6:.0f} µs; "
        f"load average {' '.join(f'{value:.2f}' for value in os.getloadavg())}"
    )
    for problem in problems[:10]:
        say(f"PROBLEM: {problem}")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    os.chdir(Path(__file__).resolve().parent.parent)
    raise SystemExit(uvloop.run(run(args)))


if __name__ == "__main__":
    main()
