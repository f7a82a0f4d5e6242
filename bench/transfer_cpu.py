"""CPU of one ``quoteTransfer`` + ``transfer`` pair in the API, for wallets with 0, 1,000 and
10,000 transfers in the last 24 hours (issue 17).

    .venv/bin/python -m bench.transfer_cpu --db postgresql
    .venv/bin/python -m bench.transfer_cpu --db sqlite --histories 0,1000,10000 --pairs 300
    .venv/bin/python -m bench.transfer_cpu --db postgresql --histories 0 --profile 40

Everything is fresh and thrown away, as in ``bench.relayer_throughput``: anvil, the contracts, a
PostgreSQL database or a SQLite file, a utility that sponsors transfers. The API runs as one
``ovpp-wallet serve`` process (production mode, nothing else inside) and the relayer as its own
``ovpp-wallet relayer`` process, so the jobs are confirmed as they come. For each history size a
new customer is provisioned through the API, funded on chain, and given that many CONFIRMED
transfers spread over the last 23 hours by direct inserts (``tests.support.history``). Then it
sends ``--warmup`` pairs, unmeasured, and ``--pairs`` sponsored pairs one after the other
through the typed client over aiohttp; the CPU each process used (from ``/proc``) over the
measured pairs, divided by the pairs, is the figure. With ``--profile N`` the API runs under
cProfile (``bench.profiled_serve``: CPU time, the measured pairs of every history only) and its
N functions with the most own time are printed, with each package's share (the CPU figures of
such a run carry the profiler's overhead: run it separately).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pstats
import shutil
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from ovpp_client import Transaction, WalletClient
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
from bench.throughput.load import AiohttpWalletClient
from bench.throughput.processes import start_api_processes, start_relayer_process, stop_process
from chain.profiles import ANVIL_DEV_PRIVATE_KEY
from chain.rpc import JsonRpc
from core.settings import REPO_ROOT, Settings, load_settings
from core.tenant_config import TenantConfig
from devsupport.databases import fresh_database
from identity.models import Tenant
from relayer.runner import prepare_relayer_keys
from relayer.sponsorship import configure_sponsor
from wallet.kms import LocalKeyEncryptionKey

AUDIENCE = "https://wallet.ovpp.bench"
TENANT_SLUG = "bench-utility"
OVPP = 10**18
AMOUNT, AMOUNT_RAW = "0.001", 10**15


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.transfer_cpu",
        description="The API's CPU per quoteTransfer + transfer pair, by the wallet's history.",
    )
    parser.add_argument("--db", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument(
        "--histories",
        default="0,1000,10000",
        help="comma-separated: transfers in the wallet's last 24 hours, one wallet each",
    )
    parser.add_argument("--pairs", type=int, default=300, help="measured pairs per wallet")
    parser.add_argument("--warmup", type=int, default=30, help="unmeasured pairs first")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="run the API under cProfile and print its N functions with the most own time",
    )
    parser.add_argument(
        "--profile-file", type=Path, default=None, help="with --profile: keep the raw stats here"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    from tests.support.issuer import TestIssuer

    histories = [int(part) for part in args.histories.split(",")]
    say(f"{args.db}; histories {histories}; {args.pairs} pairs each after {args.warmup} warm-up")
    with local_chain() as stack:
        async with fresh_database(
            args.db, directory=stack.workdir, admin_url=POSTGRES_ADMIN_URL, prefix=DATABASE_PREFIX
        ) as database_url:
            issuer = TestIssuer(audience=AUDIENCE)
            issuer.start()
            settings = load_settings(
                environment="production",
                data_dir=stack.workdir / "data",
                database_url=database_url,
                rpc_url=stack.chain.rpc_url,
                address_book=stack.address_book_path,
                kek=LocalKeyEncryptionKey.generate_base64(),
                relayer_keys=1,
                tenants=[
                    TenantConfig(
                        slug=TENANT_SLUG, name="Bench Utility", issuer=issuer.issuer,
                        audience=AUDIENCE,
                    )
                ],
                log_level="WARNING",
            )  # fmt: skip
            services = await Services.start(settings)
            rpc = JsonRpc(stack.chain.rpc_url, timeout_seconds=30)
            try:
                figures = await _bench(args, histories, settings, services, rpc, issuer, stack)
            finally:
                await rpc.close()
                await services.close()
                issuer.stop()
    _print_figures(args, figures)
    if args.json is not None:
        arguments = {name: str(value) for name, value in vars(args).items()}
        args.json.write_text(json.dumps({"arguments": arguments, **figures}))
    return 0 if all(not row["failures"] for row in figures["wallets"]) else 1


async def _bench(
    args: argparse.Namespace,
    histories: list[int],
    settings: Settings,
    services: Services,
    rpc: JsonRpc,
    issuer: Any,
    stack: LocalStack,
) -> dict[str, Any]:
    await prepare_relayer_keys(services)
    await _sponsor_transfers(services)
    profile_path = stack.workdir / "api.prof" if args.profile else None
    [(api_process, url)] = start_api_processes(settings, stack.workdir, 1, profile_to=profile_path)
    relayer_process = start_relayer_process(settings, stack.workdir)
    processes = {api_process.pid: "API", relayer_process.pid: "relayer"}
    processes.update({pid: "anvil" for pid in with_descendants(stack.chain.pid or -1)})
    rows = []
    try:
        async with aiohttp.ClientSession() as http:
            for history in histories:
                client = await _wallet_with_history(http, url, issuer, services, rpc, history)
                await _pairs(client, args.warmup, label=f"warmup-{history}")
                if args.db == "postgresql":
                    database = settings.resolved_database_url.rsplit("/", 1)[1]
                    processes.update({pid: "postgresql" for pid in postgres_backends_of(database)})
                meter = CpuMeter()
                if profile_path is not None:
                    api_process.send_signal(signal.SIGUSR1)
                meter.start(processes)
                started = time.perf_counter()
                failures = await _pairs(client, args.pairs, label=f"measured-{history}")
                wall = time.perf_counter() - started
                used = meter.stop(processes)
                if profile_path is not None:
                    api_process.send_signal(signal.SIGUSR2)
                    await asyncio.sleep(2)  # the stats are written between two requests
                rows.append(_row(history, args.pairs, used, wall, failures))
                say(f"history {history}: API {rows[-1]['cpu_ms_per_pair']['API']:.2f} ms/pair")
    finally:
        stop_process(relayer_process)
        stop_process(api_process)
    profile = _profile_top(profile_path, args.profile) if profile_path else {}
    if profile_path is not None and args.profile_file is not None:
        shutil.copyfile(profile_path, args.profile_file)
    return {"wallets": rows, "profile": profile, "load_average": os.getloadavg()}


def _row(
    history: int, pairs: int, used: dict[str, float], wall: float, failures: list[str]
) -> dict[str, Any]:
    return {
        "history": history,
        "pairs": pairs,
        "cpu_ms_per_pair": {name: 1000 * seconds / pairs for name, seconds in used.items()},
        "wall_ms_per_pair": 1000 * wall / pairs,
        "failures": failures,
    }


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


async def _wallet_with_history(
    http: aiohttp.ClientSession,
    url: str,
    issuer: Any,
    services: Services,
    rpc: JsonRpc,
    history: int,
) -> WalletClient:
    """A new customer, provisioned through the API, with 1,000 OVPP on chain and ``history``
    CONFIRMED transfers of 0.001 OVPP in its last 23 hours."""
    from tests.support.history import seed_transfers

    subject = f"bench-history-{history}-{uuid.uuid4().hex[:8]}"
    token = issuer.mint(sub=subject, email=f"{subject}@example.com", exp=int(time.time()) + 7200)
    client = AiohttpWalletClient(http, url, access_token=token)
    address = (await client.viewer_balances()).address
    assert services.chain.addresses is not None
    await send_in_nonce_order(
        rpc,
        private_key=ANVIL_DEV_PRIVATE_KEY,
        calls=[mint_call(services.chain.addresses.ovpp_token, address, 1_000 * OVPP)],
        chain_id=services.chain.profile.chain_id,
    )
    if history:
        await seed_transfers(services.db, wallet_address=address, count=history, amount=AMOUNT_RAW)
    say(f"wallet {address}: {history} transfers in its last 23 hours")
    return client


async def _pairs(client: WalletClient, count: int, *, label: str) -> list[str]:
    """``count`` sponsored pairs, one after the other; the failures, described."""
    failures = []
    to = "0x" + uuid.uuid4().hex + uuid.uuid4().hex[:8]
    for index in range(count):
        try:
            quoted = await client.quote_transfer(
                token="OVPP", to=to, amount=AMOUNT, fee_token="OVPP"
            )
            if not quoted.sponsored:
                raise RuntimeError("the quote is not sponsored")
            result = await client.transfer(
                token="OVPP",
                to=to,
                amount=AMOUNT,
                fee_token="OVPP",
                quote_id=quoted.id,
                idempotency_key=f"{label}-{index}",
            )
            if not isinstance(result, Transaction):
                raise RuntimeError(f"{type(result).__name__}: {result.message}")
        except Exception as error:  # counted and reported; the run goes on
            failures.append(f"{label} {index}: {error}"[:300])
    return failures


def _profile_top(path: Path, count: int) -> dict[str, Any]:
    """The profiled API's ``count`` functions with the most own time, and the share of own time
    of each package (the project's own by top-level package)."""
    stats = pstats.Stats(str(path))
    total = stats.total_tt or 1.0  # type: ignore[attr-defined]
    entries = stats.stats.items()  # type: ignore[attr-defined]
    packages: dict[str, float] = {}
    for (filename, _line, _name), (_primitive, _calls, own, _cumulative, _callers) in entries:
        packages[_package_of(filename)] = packages.get(_package_of(filename), 0.0) + own
    ranked = sorted(entries, key=lambda item: item[1][2], reverse=True)[:count]
    return {
        "total_seconds": total,
        "packages": {
            name: own / total for name, own in sorted(packages.items(), key=lambda i: -i[1])
        },
        "functions": [
            {
                "function": f"{_package_of(filename)}:{Path(filename).name}:{line}({name})",
                "own_seconds": own,
                "share": own / total,
                "calls": calls,
            }
            for (filename, line, name), (_primitive, calls, own, _cumulative, _callers) in ranked
        ],
    }


def _package_of(filename: str) -> str:
    if filename == "~":
        return "builtins (C)"
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    root = str(REPO_ROOT) + "/"
    if filename.startswith(root) or not filename.startswith("/"):
        return "ovpp:" + filename.removeprefix(root).split("/", 1)[0]
    return "stdlib:" + Path(filename).stem


def _print_figures(args: argparse.Namespace, figures: dict[str, Any]) -> None:
    print(f"\nCPU ms per quoteTransfer + transfer pair ({args.db}, {args.pairs} pairs each)")
    names = sorted({name for row in figures["wallets"] for name in row["cpu_ms_per_pair"]})
    print(f"{'history':>8} " + " ".join(f"{name:>11}" for name in names) + "  wall ms  failed")
    for row in figures["wallets"]:
        cpu = row["cpu_ms_per_pair"]
        cells = " ".join(f"{cpu.get(name, 0.0):>11.2f}" for name in names)
        print(
            f"{row['history']:>8} {cells} {row['wall_ms_per_pair']:>8.1f} {len(row['failures']):>7}"
        )
    api = [row["cpu_ms_per_pair"]["API"] for row in figures["wallets"]]
    if len(api) > 1 and min(api) > 0:
        print(f"API spread: {100 * (max(api) / min(api) - 1):.1f} % (max / min - 1)")
    for row in figures["wallets"]:
        for failure in row["failures"][:3]:
            print(f"  failed: {failure}")
    profile = figures["profile"]
    if profile:
        print(f"\nAPI profile (cProfile, CPU time, {profile['total_seconds']:.2f} s in all)")
        print("own time by package: " + ", ".join(
            f"{name} {100 * share:.1f} %" for name, share in list(profile["packages"].items())[:14]
        ))  # fmt: skip
        for entry in profile["functions"]:
            print(
                f"  {100 * entry['share']:5.1f} %  {entry['own_seconds']:7.3f} s "
                f"{entry['calls']:>9}  {entry['function']}"
            )


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    os.chdir(REPO_ROOT)
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
