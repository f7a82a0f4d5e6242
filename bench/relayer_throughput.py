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
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from ovpp_client import Transaction, WalletClient
from ovpp_client.operations import operation_document
from sqlalchemy import func, select, text

from api.container import Services
from bench.harness import (
    CpuMeter,
    LocalStack,
    balance_of_call,
    forwarder_nonce_call,
    free_port,
    fresh_database,
    local_chain,
    mint_call,
    percentile,
    postgres_backends_of,
    read_uint_calls,
    say,
    send_in_nonce_order,
    with_descendants,
)
from chain.profiles import ANVIL_DEV_PRIVATE_KEY
from chain.rpc import JsonRpc
from core.settings import REPO_ROOT, Settings, TenantConfig, load_settings
from identity.models import Tenant
from relayer.models import RelayerKey, RelayStatus, RelayTransaction
from relayer.runner import RunningRelayer, prepare_relayer_keys, start_relayer
from relayer.sponsorship import configure_sponsor
from wallet.kms import LocalKeyEncryptionKey

AUDIENCE = "https://wallet.ovpp.bench"
TENANT_SLUG = "bench-utility"
OVPP = 10**18
WALLET_FUNDS = 1_000 * OVPP
TRANSFER_AMOUNT = "0.001"
TRANSFER_AMOUNT_RAW = 10**15


@dataclass
class Wallet:
    token: str
    address: str
    index: int  # which API process serves it (--api process): one wallet, one server


@dataclass
class Outcome:
    accepted: dict[str, float] = field(default_factory=dict)  # job id → wall clock accepted
    request_seconds: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    recipients_of: dict[str, tuple[str, str]] = field(default_factory=dict)  # id → (from, to)
    started: float = 0.0
    last_accepted: float = 0.0
    relayer_started: float = 0.0  # with --prequeue: when the relayer was started
    # PostgreSQL: what the benchmark database's backends were doing, summed over the samples
    # taken once a second while requests were in flight (see _sample_backends).
    backend_samples: Counter[str] = field(default_factory=Counter)
    backend_sample_count: int = 0


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
        async with fresh_database(args.db, stack.workdir) as database_url:
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
    say(f"{args.keys} relayer key(s) funded; sponsor configured")

    api_processes: list[tuple[subprocess.Popen[bytes], str]] = []
    if args.api == "process":
        api_processes = _start_api_processes(settings, stack.workdir, args.api_processes)
    urls = [url for _process, url in api_processes]
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

        wallets = await _provision_wallets(client_for, issuer, count=args.wallets)
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
        recipients = [
            "0x" + uuid.uuid4().hex + uuid.uuid4().hex[:8] for _ in range(args.recipients)
        ]

        relayer_process: subprocess.Popen[bytes] | None = None
        running: RunningRelayer | None = None

        async def start() -> None:
            nonlocal relayer_process, running
            if args.relayer == "inprocess":
                running = await start_relayer(services, name="bench-relayer")
            else:
                relayer_process = _start_relayer_process(settings, stack.workdir)

        if not args.prequeue:
            await start()
        outcome = Outcome()
        meter = CpuMeter()

        def processes() -> dict[int, str]:
            named = {os.getpid(): "bench process"}
            named.update({process.pid: "API processes" for process, _url in api_processes})
            named.update({pid: "anvil" for pid in with_descendants(_pid_of(stack.chain))})
            if relayer_process is not None:
                named[relayer_process.pid] = "relayer process"
            if args.db == "postgresql":
                database = settings.resolved_database_url.rsplit("/", 1)[1]
                named.update({pid: "postgresql" for pid in postgres_backends_of(database)})
            return named

        meter.start(processes())
        progress_stop = asyncio.Event()
        progress = asyncio.create_task(
            _report_progress(services, outcome, args.transfers, progress_stop)
        )
        try:
            await _submit(client_for, wallets, recipients, args, outcome)
            say(
                f"all requests answered: {len(outcome.accepted)} accepted, "
                f"{len(outcome.failures)} failed"
            )
            if args.prequeue:
                say("starting the relayer on the queued transfers")
                meter.start(processes())
                if args.relayer == "inprocess":
                    outcome.relayer_started = time.time()
                    await start()
                else:  # the clock starts when the process is up, not while Python boots
                    await start()
                    outcome.relayer_started = time.time()
            finished = await _wait_until_final(services, outcome, within_seconds=args.timeout)
            cpu = meter.stop(processes())
        finally:
            progress_stop.set()
            await progress
            if running is not None:
                await running.shutdown()
            if relayer_process is not None:
                _stop_process(relayer_process)
            for process, _url in api_processes:
                _stop_process(process)
    if not finished:
        say("timed out waiting for confirmations")
    figures = await _figures(services, outcome)
    figures["cpu_seconds"] = cpu
    figures["load_average"] = os.getloadavg()
    problems = await _verify(services, rpc, outcome, wallets)
    _print_summary(args, figures, problems, outcome)
    if args.json is not None:
        args.json.write_text(
            json.dumps({"arguments": _jsonable(vars(args)), **figures, "problems": problems}) + "\n"
        )
    return 0 if not problems and finished and not outcome.failures else 1


async def _provision_wallets(
    client_for: Callable[[int, str], WalletClient], issuer: Any, *, count: int
) -> list[Wallet]:
    semaphore = asyncio.Semaphore(16)

    async def one(index: int) -> Wallet:
        subject = f"bench-{index}-{uuid.uuid4().hex[:8]}"
        expires = int(time.time()) + 3600
        token = issuer.mint(sub=subject, email=f"{subject}@example.com", exp=expires)
        async with semaphore:
            viewer = await client_for(index, token).viewer_balances()
        return Wallet(token=token, address=viewer.address, index=index)

    return list(await asyncio.gather(*(one(index) for index in range(count))))


async def _submit(
    client_for: Callable[[int, str], WalletClient],
    wallets: list[Wallet],
    recipients: list[str],
    args: argparse.Namespace,
    outcome: Outcome,
) -> None:
    """Round-robin over the wallets, at most ``concurrency`` transfers in flight."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(args.transfers):
        queue.put_nowait(index)

    async def worker() -> None:
        while True:
            try:
                index = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            wallet = wallets[index % len(wallets)]
            to = recipients[index % len(recipients)]
            began = time.perf_counter()
            # Through the typed client (clients/python), as a utility's app would call the API.
            api = client_for(wallet.index, wallet.token)
            try:
                quoted = await api.quote_transfer(
                    token="OVPP", to=to, amount=TRANSFER_AMOUNT, fee_token="OVPP"
                )
                if not quoted.sponsored:
                    raise RuntimeError("the quote is not sponsored")
                result = await api.transfer(
                    token="OVPP",
                    to=to,
                    amount=TRANSFER_AMOUNT,
                    fee_token="OVPP",
                    quote_id=quoted.id,
                    idempotency_key=f"bench-{index}",
                )
                if not isinstance(result, Transaction):
                    raise RuntimeError(f"{type(result).__name__}: {result.message}")
            except Exception as error:  # counted and reported; the run goes on
                outcome.failures.append(f"transfer {index}: {error}"[:300])
                continue
            now = time.time()
            outcome.accepted[result.id] = now
            outcome.recipients_of[result.id] = (wallet.address, to)
            outcome.request_seconds.append(time.perf_counter() - began)
            outcome.last_accepted = max(outcome.last_accepted, now)

    outcome.started = time.time()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))


async def _status_counts(services: Services) -> Counter[str]:
    async with services.db.session() as session:
        rows = await session.execute(
            select(RelayTransaction.status, func.count()).group_by(RelayTransaction.status)
        )
        return Counter({status: int(count) for status, count in rows.all()})


_BACKENDS_BY_WAIT = text(
    "SELECT state, wait_event_type, wait_event, count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
    "AND state IS DISTINCT FROM 'idle' GROUP BY 1, 2, 3"
)


async def _sample_backends(services: Services) -> Counter[str]:
    """The benchmark database's busy backends by what they wait for, now: ``active`` with no
    wait is running or runnable, ``active Lock:tuple`` waits for a row another transaction
    locked (the sponsor's, in this workload), ``idle in transaction`` is a transaction whose
    client has not sent its next statement yet (waiting for the API's event loop or a core)."""
    async with services.db.session() as session:
        rows = (await session.execute(_BACKENDS_BY_WAIT)).all()
    return Counter(
        {
            " ".join(filter(None, (state, f"{kind}:{event}" if kind else None))): int(count)
            for state, kind, event, count in rows
        }
    )


async def _report_progress(
    services: Services, outcome: Outcome, total: int, stop: asyncio.Event
) -> None:
    last_confirmed, last_time = 0, time.monotonic()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)
        counts = await _status_counts(services)
        if not services.db.is_sqlite and len(outcome.accepted) < total:
            outcome.backend_samples.update(await _sample_backends(services))
            outcome.backend_sample_count += 1
        now = time.monotonic()
        confirmed = counts.get(RelayStatus.CONFIRMED, 0)
        rate = (confirmed - last_confirmed) / (now - last_time)
        last_confirmed, last_time = confirmed, now
        pipeline = " ".join(
            f"{status.lower()}={counts.get(status, 0)}"
            for status in ("QUEUED", "SIGNED", "SUBMITTED", "MINED", "FAILED")
        )
        say(
            f"accepted {len(outcome.accepted)}/{total}  confirmed {confirmed} "
            f"({rate:.0f}/s)  {pipeline}  errors {len(outcome.failures)}"
        )


async def _wait_until_final(services: Services, outcome: Outcome, *, within_seconds: float) -> bool:
    deadline = time.monotonic() + within_seconds
    while time.monotonic() < deadline:
        counts = await _status_counts(services)
        final = sum(counts.get(s, 0) for s in ("CONFIRMED", "FAILED", "REPLACED"))
        if final >= len(outcome.accepted):
            return True
        await asyncio.sleep(0.2)
    return False


def _environment(settings: Settings) -> dict[str, str]:
    """The product configured by environment, as an operator would run it."""
    assert settings.kek is not None
    return {
        **{key: value for key, value in os.environ.items() if not key.startswith("OVPP_")},
        "OVPP_ENVIRONMENT": "production",
        "OVPP_DATA_DIR": str(settings.data_dir),
        "OVPP_DATABASE_URL": settings.resolved_database_url,
        "OVPP_RPC_URL": settings.resolved_rpc_url,
        "OVPP_ADDRESS_BOOK": str(settings.address_book),
        "OVPP_KEK": settings.kek.get_secret_value(),
        "OVPP_RELAYER_KEYS": str(settings.relayer_keys),
        "OVPP_TENANTS": json.dumps([tenant.model_dump() for tenant in settings.tenants]),
        "OVPP_LOG_LEVEL": "WARNING",
        "OVPP_DATABASE_POOL_SIZE": str(settings.database_pool_size),
        "OVPP_RELAYER_ROUND_PAUSE_SECONDS": str(settings.relayer_round_pause_seconds),
    }


def _start_relayer_process(settings: Settings, workdir: Path) -> subprocess.Popen[bytes]:
    """``ovpp-wallet relayer`` configured by environment, as an operator would run it."""
    log_path = workdir / "relayer.log"
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "ovpp-wallet"), "relayer"],
        env=_environment(settings),
        cwd=workdir,
        stdout=open(log_path, "wb"),  # the child process owns it
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while b"relayer worker running" not in log_path.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the relayer process did not start:\n{log_path.read_text()}")
        time.sleep(0.1)
    say(f"relayer process {process.pid} running")
    return process


def _start_api_processes(
    settings: Settings, workdir: Path, count: int
) -> list[tuple[subprocess.Popen[bytes], str]]:
    """``count`` × ``ovpp-wallet serve`` (production mode, no relayer inside), each on its own
    port, as behind a load balancer; returns them with their GraphQL URLs once they answer."""
    started = []
    for index in range(count):
        port = free_port()
        log_path = workdir / f"api-{index}.log"
        environment = {
            **_environment(settings),
            "OVPP_PORT": str(port),
            "OVPP_RELAYER_IN_SERVE": "false",
            "OVPP_ONRAMP_PROCESSOR_IN_SERVE": "false",
        }
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "ovpp-wallet"), "serve"],
            env=environment,
            cwd=workdir,
            stdout=open(log_path, "wb"),  # the child process owns it
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append((process, f"http://127.0.0.1:{port}", log_path))
    deadline = time.monotonic() + 90
    for process, url, log_path in started:
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"an API process did not start:\n{log_path.read_text()}")
            time.sleep(0.2)
        say(f"API process {process.pid} answering at {url}")
    return [(process, url + "/graphql") for process, url, _log in started]


class AiohttpWalletClient(WalletClient):
    """The typed client (clients/python) over an aiohttp session instead of httpx: the load
    generator shares the machine's two cores with what it measures, and aiohttp costs about a
    third of httpx's CPU per request."""

    def __init__(self, session: Any, url: str, *, access_token: str) -> None:
        super().__init__(None, access_token=access_token)  # type: ignore[arg-type]
        self._session, self._url = session, url

    async def execute(self, operation_name: str, variables: dict[str, Any] | None = None) -> Any:
        body = {
            "query": operation_document(operation_name),
            "operationName": operation_name,
            "variables": variables or {},
        }
        async with self._session.post(self._url, json=body, headers=self._headers()) as response:
            answer = await response.json(content_type=None)
        if response.status != 200 or answer.get("errors") or answer.get("data") is None:
            raise RuntimeError(f"HTTP {response.status}: {answer.get('errors')}")
        return answer["data"]


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _figures(services: Services, outcome: Outcome) -> dict[str, Any]:
    async with services.db.session() as session:
        rows = (
            await session.execute(
                select(RelayTransaction.id, RelayTransaction.confirmed_at).where(
                    RelayTransaction.status == RelayStatus.CONFIRMED
                )
            )
        ).all()
    confirmed_at = {job_id: _epoch(moment) for job_id, moment in rows if moment is not None}
    # With --prequeue the clock starts when the relayer does (it measures the relayer alone).
    latencies = [
        confirmed_at[job_id] - max(accepted, outcome.relayer_started)
        for job_id, accepted in outcome.accepted.items()
        if job_id in confirmed_at
    ]
    first_accepted = outcome.relayer_started or min(outcome.accepted.values(), default=0.0)
    last_confirmed = max(confirmed_at.values(), default=0.0)
    accept_span = outcome.last_accepted - outcome.started
    confirm_span = last_confirmed - first_accepted
    return {
        "accepted": len(outcome.accepted),
        "failed_requests": len(outcome.failures),
        "confirmed": len(confirmed_at),
        "accepted_per_second": len(outcome.accepted) / accept_span if accept_span > 0 else 0,
        "confirmed_per_second": len(confirmed_at) / confirm_span if confirm_span > 0 else 0,
        "end_to_end_seconds": confirm_span,
        "request_p50_ms": 1000 * percentile(outcome.request_seconds, 0.50),
        "request_p95_ms": 1000 * percentile(outcome.request_seconds, 0.95),
        "latency_p50_ms": 1000 * percentile(latencies, 0.50),
        "latency_p95_ms": 1000 * percentile(latencies, 0.95),
        "latency_max_ms": 1000 * max(latencies, default=float("nan")),
        "backends_per_sample": {
            what: count / outcome.backend_sample_count
            for what, count in outcome.backend_samples.most_common()
        }
        if outcome.backend_sample_count
        else {},
    }


def _epoch(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


async def _verify(
    services: Services, rpc: JsonRpc, outcome: Outcome, wallets: list[Wallet]
) -> list[str]:
    """What a user and an auditor would check; an empty list means all holds."""
    problems: list[str] = []
    addresses = services.chain.addresses
    assert addresses is not None
    async with services.db.session() as session:
        jobs = (
            await session.execute(
                select(
                    RelayTransaction.id,
                    RelayTransaction.status,
                    RelayTransaction.relayer_key_id,
                    RelayTransaction.relayer_nonce,
                    RelayTransaction.tx_hash,
                    RelayTransaction.wallet_id,
                    RelayTransaction.forwarder_nonce,
                    RelayTransaction.attempts,
                )
            )
        ).all()
        keys = list((await session.execute(select(RelayerKey))).scalars())

    # Every accepted transfer is exactly one job, CONFIRMED, with its own transaction.
    job_ids = {job.id for job in jobs}
    if job_ids != set(outcome.accepted):
        problems.append(
            f"jobs in the database ({len(job_ids)}) differ from transfers accepted "
            f"({len(outcome.accepted)})"
        )
    not_confirmed = [job for job in jobs if job.status != RelayStatus.CONFIRMED]
    if not_confirmed:
        statuses = Counter(job.status for job in not_confirmed)
        problems.append(f"{len(not_confirmed)} job(s) not CONFIRMED: {dict(statuses)}")
    hashes = [job.tx_hash for job in jobs if job.tx_hash]
    if len(set(hashes)) != len(jobs):
        problems.append("transaction hashes are missing or shared between jobs")
    bumped = sum(1 for job in jobs if job.attempts > 1)
    if bumped:
        say(f"note: {bumped} job(s) needed a fee bump")

    # Receipts: every job's final transaction landed and succeeded.
    for start in range(0, len(hashes), 500):
        part = hashes[start : start + 500]
        receipts = await rpc.batch([("eth_getTransactionReceipt", [h]) for h in part])
        for tx_hash, receipt in zip(part, receipts, strict=True):
            if not isinstance(receipt, dict) or int(receipt["status"], 16) != 1:
                problems.append(f"transaction {tx_hash} has no successful receipt")

    # Relayer nonces: contiguous 0..n-1 per key in the database, and n on chain.
    by_key: dict[str, list[int]] = defaultdict(list)
    for job in jobs:
        if job.relayer_nonce is not None:
            by_key[job.relayer_key_id].append(job.relayer_nonce)
    chain_nonces = await rpc.batch(
        [("eth_getTransactionCount", [key.address, "latest"]) for key in keys]
    )
    for key, chain_nonce in zip(keys, chain_nonces, strict=True):
        nonces = sorted(by_key.get(key.id, []))
        if nonces != list(range(len(nonces))):
            problems.append(f"relayer key {key.slot}: database nonces have gaps or repeats")
        if key.next_nonce != len(nonces):
            problems.append(
                f"relayer key {key.slot}: next_nonce {key.next_nonce} != {len(nonces)} jobs"
            )
        if int(chain_nonce, 16) != len(nonces):
            problems.append(
                f"relayer key {key.slot}: nonce on chain {int(chain_nonce, 16)} != "
                f"{len(nonces)} transactions"
            )
        say(f"relayer key {key.slot} {key.address}: {len(nonces)} transactions")

    # Forwarder nonces per wallet: each transfer executed exactly once on chain.
    per_sender = Counter(sender for sender, _to in outcome.recipients_of.values())
    forwarder_nonces = await read_uint_calls(
        rpc, [forwarder_nonce_call(addresses.forwarder, wallet.address) for wallet in wallets]
    )
    wrong = [
        wallet.address
        for wallet, nonce in zip(wallets, forwarder_nonces, strict=True)
        if nonce != per_sender.get(wallet.address, 0)
    ]
    if wrong:
        problems.append(f"{len(wrong)} wallet(s) whose forwarder nonce != transfers accepted")

    # Balances: recipients got exactly what was sent, senders lost exactly that.
    per_recipient = Counter(to for _sender, to in outcome.recipients_of.values())
    recipients = sorted(per_recipient)
    received = await read_uint_calls(
        rpc, [balance_of_call(addresses.ovpp_token, to) for to in recipients]
    )
    for to, balance in zip(recipients, received, strict=True):
        if balance != per_recipient[to] * TRANSFER_AMOUNT_RAW:
            problems.append(f"recipient {to} holds {balance}, expected more or less")
    left = await read_uint_calls(
        rpc, [balance_of_call(addresses.ovpp_token, w.address) for w in wallets]
    )
    for wallet, balance in zip(wallets, left, strict=True):
        if balance != WALLET_FUNDS - per_sender.get(wallet.address, 0) * TRANSFER_AMOUNT_RAW:
            problems.append(f"sender {wallet.address} balance {balance} does not add up")
    return problems


def _print_summary(
    args: argparse.Namespace,
    figures: dict[str, Any],
    problems: list[str],
    outcome: Outcome,
) -> None:
    mode = "automine" if not args.block_time else f"block-time {args.block_time:g}s"
    relayer = f"{args.relayer}{' prequeued' if args.prequeue else ''}"
    api = "in-process" if args.api == "inprocess" else f"{args.api_processes} process(es)"
    start = "relayer start" if args.prequeue else "first accepted"
    rows = [
        ("configuration", f"{args.keys} key(s), {args.db}, API {api}, relayer {relayer}, {mode}"),
        ("transfers accepted", f"{figures['accepted']} / {args.transfers}"),
        ("failed requests", str(figures["failed_requests"])),
        ("confirmed", str(figures["confirmed"])),
        ("accepted / s", f"{figures['accepted_per_second']:.1f}"),
        ("confirmed / s (end to end)", f"{figures['confirmed_per_second']:.1f}"),
        (f"{start} → last confirmed", f"{figures['end_to_end_seconds']:.2f} s"),
        (
            "request (quote + transfer) p50 / p95",
            f"{figures['request_p50_ms']:.0f} / {figures['request_p95_ms']:.0f} ms",
        ),
        (
            f"{start.split()[-1]} → confirmed p50 / p95 / max",
            f"{figures['latency_p50_ms']:.0f} / {figures['latency_p95_ms']:.0f} / "
            f"{figures['latency_max_ms']:.0f} ms",
        ),
        *(
            (f"CPU per transfer: {name}", f"{1000 * seconds / max(args.transfers, 1):.1f} ms")
            for name, seconds in sorted(figures["cpu_seconds"].items())
        ),
        *(
            (f"PostgreSQL backends: {what}", f"{mean:.1f} on average")
            for what, mean in list(figures["backends_per_sample"].items())[:6]
        ),
        ("load average after (1/5/15 min)", " ".join(f"{v:.1f}" for v in figures["load_average"])),
        ("verification", "OK" if not problems else f"{len(problems)} problem(s)"),
    ]
    width = max(len(label) for label, _ in rows)
    print()
    for label, value in rows:
        print(f"  {label.ljust(width)}  {value}")
    for problem in problems[:20]:
        print(f"  PROBLEM: {problem}")
    for failure in outcome.failures[:5]:
        print(f"  FAILED REQUEST: {failure}")
    print(
        f"\n| {args.keys} | {args.db} | {api} | {relayer} | {mode} | "
        f"{figures['accepted_per_second']:.0f} | {figures['confirmed_per_second']:.0f} | "
        f"{figures['latency_p50_ms']:.0f} | {figures['latency_p95_ms']:.0f} | "
        f"{'OK' if not problems else 'FAIL'} |"
    )


def _pid_of(chain: Any) -> int:
    process = getattr(chain, "_process", None)
    return process.pid if process is not None else -1


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {key: str(value) if isinstance(value, Path) else value for key, value in values.items()}


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    os.chdir(REPO_ROOT)
    # SIGTERM as Ctrl-C: the run unwinds and stops the API and relayer processes it started,
    # which the default action would leave running (and taking CPU from the next run).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
