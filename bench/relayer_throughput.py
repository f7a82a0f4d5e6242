"""Throughput of sponsored transfers, end to end: GraphQL ``quoteTransfer`` + ``transfer``
through the real ASGI app, the relayer worker, a local anvil, and a real database.

    .venv/bin/python -m bench.relayer_throughput --keys 4 --transfers 2000 --db postgresql
    .venv/bin/python -m bench.relayer_throughput --keys 4 --db sqlite --relayer process
    .venv/bin/python -m bench.relayer_throughput --keys 4 --db postgresql --block-time 1

Everything is fresh and thrown away: anvil (``--hardfork shanghai``, free port, automine unless
``--block-time``), the database (a throwaway PostgreSQL database on 127.0.0.1:5432 as user
postgres, or a SQLite file), the contracts, a utility that sponsors transfers, and
``--wallets`` funded customers. Transfers are submitted round-robin over the wallets with at
most ``--concurrency`` in flight (one wallet's transfers are serialised by its row lock, so
many wallets are needed). The relayer runs in this process (``--relayer inprocess``, one event
loop shared with the API) or as ``ovpp-wallet relayer`` in a second process (``--relayer
process``, which can use the second core).

Timed: accepted/s (first request sent → last transfer accepted), confirmed/s (first transfer
accepted → last one CONFIRMED, from the rows' ``confirmed_at``) and accepted → confirmed
latency per transfer. Checked afterwards, on the chain and in the database: every job
CONFIRMED exactly once with a successful receipt; each relayer key's nonces in the database
are 0..n-1 with no gap and its nonce on chain is n; each wallet's forwarder nonce on chain
equals its number of transfers; every recipient's and sender's balance adds up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from ovpp_client import WalletClient
from sqlalchemy import select

from api.container import Services
from bench.harness import (
    DATABASE_PREFIX,
    POSTGRES_ADMIN_URL,
    CpuMeter,
    LocalStack,
    local_chain,
    mint_call,
    postgres_backends_of,
    say,
    send_in_nonce_order,
    with_descendants,
)
from bench.throughput.load import (
    WALLET_FUNDS,
    AiohttpWalletClient,
    Outcome,
    Wallet,
    provision_wallets,
    submit,
)
from bench.throughput.processes import start_api_processes, start_relayer_process, stop_process
from bench.throughput.progress import report_progress, wait_until_final
from bench.throughput.report import figures_of, jsonable, print_summary
from bench.throughput.verify import verify
from chain.profiles import ANVIL_DEV_PRIVATE_KEY
from chain.rpc import JsonRpc
from core.settings import REPO_ROOT, Settings, load_settings
from core.tenant_config import TenantConfig
from devsupport.databases import fresh_database
from identity.models import Tenant
from relayer.runner import RunningRelayer, prepare_relayer_keys, start_relayer
from relayer.sponsorship import configure_sponsor
from wallet.kms import LocalKeyEncryptionKey

AUDIENCE = "https://wallet.ovpp.bench"
TENANT_SLUG = "bench-utility"

WalletClientFor = Callable[[int, str], WalletClient]


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.relayer_throughput",
        description="End-to-end throughput of sponsored gasless transfers.",
    )
    parser.add_argument("--keys", type=int, default=4, help="relayer keys (OVPP_RELAYER_KEYS)")
    parser.add_argument("--transfers", type=int, default=2000)
    parser.add_argument("--db", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--wallets", type=int, default=250, help="funded customer wallets")
    parser.add_argument("--recipients", type=int, default=100, help="distinct destinations")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument(
        "--relayer",
        choices=("inprocess", "process"),
        default="inprocess",
        help="worker in this event loop, or `ovpp-wallet relayer` as a second process",
    )
    parser.add_argument(
        "--api",
        choices=("inprocess", "process"),
        default="inprocess",
        help="the ASGI app in this process (httpx ASGITransport), or `ovpp-wallet serve` "
        "processes over HTTP (--api-processes of them; the load is spread over them)",
    )
    parser.add_argument(
        "--api-processes", type=int, default=1, help="with --api process: how many servers"
    )
    parser.add_argument(
        "--block-time", type=float, default=0, help="anvil --block-time; 0 = automine"
    )
    parser.add_argument(
        "--prequeue",
        action="store_true",
        help="queue every transfer first, then start the relayer: times the relayer alone",
    )
    parser.add_argument("--pool-size", type=int, default=None, help="OVPP_DATABASE_POOL_SIZE")
    parser.add_argument(
        "--round-pause",
        type=float,
        default=None,
        help="OVPP_RELAYER_ROUND_PAUSE_SECONDS: the relayer's pause after a busy round",
    )
    parser.add_argument("--timeout", type=float, default=240, help="give up after this long")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    from tests.support.issuer import TestIssuer

    mode = "automine" if not args.block_time else f"--block-time {args.block_time:g}"
    say(
        f"{args.transfers} sponsored transfers, {args.keys} relayer key(s), {args.db}, "
        f"{args.wallets} wallets, concurrency {args.concurrency}, relayer {args.relayer}, "
        f"anvil {mode}"
    )
    with local_chain(block_time=args.block_time or None) as stack:
        say(f"anvil on {stack.chain.rpc_url}; contracts deployed")
        async with fresh_database(
            args.db, directory=stack.workdir, admin_url=POSTGRES_ADMIN_URL, prefix=DATABASE_PREFIX
        ) as database_url:
            say(f"database migrated ({args.db})")
            issuer = TestIssuer(audience=AUDIENCE)
            issuer.start()
            kek = LocalKeyEncryptionKey.generate_base64()
            overrides: dict[str, Any] = {}
            if args.pool_size:
                overrides["database_pool_size"] = args.pool_size
            if args.round_pause is not None:
                overrides["relayer_round_pause_seconds"] = args.round_pause
            settings = load_settings(
                environment="production",
                data_dir=stack.workdir / "data",
                database_url=database_url,
                rpc_url=stack.chain.rpc_url,
                address_book=stack.address_book_path,
                kek=kek,
                relayer_keys=args.keys,
                tenants=[
                    TenantConfig(
                        slug=TENANT_SLUG,
                        name="Bench Utility",
                        issuer=issuer.issuer,
                        audience=AUDIENCE,
                    )
                ],
                log_level="WARNING",
                **overrides,
            )
            services = await Services.start(settings)
            rpc = JsonRpc(stack.chain.rpc_url, timeout_seconds=30)
            try:
                return await _bench(args, settings, services, rpc, issuer, stack)
            finally:
                await rpc.close()
                await services.close()
                issuer.stop()


class RelayerUnderTest:
    """The relayer worker: in this event loop (``inprocess``) or ``ovpp-wallet relayer``."""

    def __init__(self, mode: str, *, settings: Settings, services: Services, workdir: Path) -> None:
        self.mode, self.settings, self.services, self.workdir = mode, settings, services, workdir
        self.running: RunningRelayer | None = None
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        if self.mode == "inprocess":
            self.running = await start_relayer(self.services, name="bench-relayer")
        else:
            self.process = start_relayer_process(self.settings, self.workdir)

    async def stop(self) -> None:
        if self.running is not None:
            await self.running.shutdown()
        if self.process is not None:
            stop_process(self.process)


async def _bench(
    args: argparse.Namespace,
    settings: Settings,
    services: Services,
    rpc: JsonRpc,
    issuer: Any,
    stack: LocalStack,
) -> int:
    from api.app import create_app

    app = create_app(settings, services=services)
    await prepare_relayer_keys(services)
    await _sponsor_transfers(services)
    say(f"{args.keys} relayer key(s) funded; sponsor configured")

    api_processes: list[tuple[subprocess.Popen[bytes], str]] = []
    if args.api == "process":
        api_processes = start_api_processes(settings, stack.workdir, args.api_processes)
    urls = [url for _process, url in api_processes]
    relayer = RelayerUnderTest(
        args.relayer, settings=settings, services=services, workdir=stack.workdir
    )
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=120) as client,
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=args.concurrency * 2),
            timeout=aiohttp.ClientTimeout(total=120),
        ) as session,
    ):

        def client_for(index: int, token: str) -> WalletClient:
            if not urls:
                return WalletClient(client, access_token=token)
            return AiohttpWalletClient(session, urls[index % len(urls)], access_token=token)

        wallets = await _funded_wallets(client_for, issuer, services, rpc, count=args.wallets)
        recipients = [
            "0x" + uuid.uuid4().hex + uuid.uuid4().hex[:8] for _ in range(args.recipients)
        ]
        if not args.prequeue:
            await relayer.start()
        outcome = Outcome()

        def processes() -> dict[int, str]:
            return _processes_to_meter(args, settings, stack, api_processes, relayer)

        try:
            finished, cpu = await _measure(
                args, services, client_for, wallets, recipients, outcome, relayer, processes
            )
        finally:
            await relayer.stop()
            for process, _url in api_processes:
                stop_process(process)
    return await _conclude(args, services, rpc, outcome, wallets, finished=finished, cpu=cpu)


async def _sponsor_transfers(services: Services) -> None:
    async with services.db.session() as session:
        tenant = (
            await session.execute(select(Tenant).where(Tenant.slug == TENANT_SLUG))
        ).scalar_one()
        await configure_sponsor(
            session,
            tenant_id=tenant.id,
            name="Bench Utility",
            add_funds_wei=10**24,
            per_transaction_cap_wei=10**18,
            per_customer_daily_cap_wei=10**22,
            period_cap_wei=10**24,
        )


async def _funded_wallets(
    client_for: WalletClientFor, issuer: Any, services: Services, rpc: JsonRpc, *, count: int
) -> list[Wallet]:
    wallets = await provision_wallets(client_for, issuer, count=count)
    await send_in_nonce_order(
        rpc,
        private_key=ANVIL_DEV_PRIVATE_KEY,
        calls=[
            mint_call(services.chain.addresses.ovpp_token, w.address, WALLET_FUNDS)  # type: ignore[union-attr]
            for w in wallets
        ],
        chain_id=services.chain.profile.chain_id,
    )
    say(f"{len(wallets)} customer wallets provisioned through the API and funded on chain")
    return wallets


def _processes_to_meter(
    args: argparse.Namespace,
    settings: Settings,
    stack: LocalStack,
    api_processes: list[tuple[subprocess.Popen[bytes], str]],
    relayer: RelayerUnderTest,
) -> dict[int, str]:
    named = {os.getpid(): "bench process"}
    named.update({process.pid: "API processes" for process, _url in api_processes})
    named.update({pid: "anvil" for pid in with_descendants(stack.chain.pid or -1)})
    if relayer.process is not None:
        named[relayer.process.pid] = "relayer process"
    if args.db == "postgresql":
        database = settings.resolved_database_url.rsplit("/", 1)[1]
        named.update({pid: "postgresql" for pid in postgres_backends_of(database)})
    return named


async def _measure(
    args: argparse.Namespace,
    services: Services,
    client_for: WalletClientFor,
    wallets: list[Wallet],
    recipients: list[str],
    outcome: Outcome,
    relayer: RelayerUnderTest,
    processes: Callable[[], dict[int, str]],
) -> tuple[bool, dict[str, float]]:
    """Submit the transfers and wait until they are final; whether they all are in time, and
    the CPU each process spent."""
    meter = CpuMeter()
    meter.start(processes())
    progress_stop = asyncio.Event()
    progress = asyncio.create_task(
        report_progress(services, outcome, args.transfers, progress_stop)
    )
    try:
        await submit(client_for, wallets, recipients, args, outcome)
        say(
            f"all requests answered: {len(outcome.accepted)} accepted, "
            f"{len(outcome.failures)} failed"
        )
        if args.prequeue:
            say("starting the relayer on the queued transfers")
            meter.start(processes())
            if args.relayer == "inprocess":
                outcome.relayer_started = time.time()
                await relayer.start()
            else:  # the clock starts when the process is up, not while Python boots
                await relayer.start()
                outcome.relayer_started = time.time()
        finished = await wait_until_final(services, outcome, within_seconds=args.timeout)
        return finished, meter.stop(processes())
    finally:
        progress_stop.set()
        await progress


async def _conclude(
    args: argparse.Namespace,
    services: Services,
    rpc: JsonRpc,
    outcome: Outcome,
    wallets: list[Wallet],
    *,
    finished: bool,
    cpu: dict[str, float],
) -> int:
    if not finished:
        say("timed out waiting for confirmations")
    figures = await figures_of(services, outcome)
    figures["cpu_seconds"] = cpu
    figures["load_average"] = os.getloadavg()
    problems = await verify(services, rpc, outcome, wallets)
    print_summary(args, figures, problems, outcome)
    if args.json is not None:
        args.json.write_text(
            json.dumps({"arguments": jsonable(vars(args)), **figures, "problems": problems}) + "\n"
        )
    return 0 if not problems and finished and not outcome.failures else 1


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    os.chdir(REPO_ROOT)
    # SIGTERM as Ctrl-C: the run unwinds and stops the API and relayer processes it started,
    # which the default action would leave running (and taking CPU from the next run).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
