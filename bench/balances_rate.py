"""The hot query: ``viewer { wallet { balances … } }`` against ``viewer { email }`` on the same
``ovpp-wallet serve``, in the same run, at ``--connections`` concurrent connections.

    .venv/bin/python -m bench.balances_rate
    .venv/bin/python -m bench.balances_rate --profile /tmp/balances.prof

Everything is fresh and thrown away: anvil (automine, free port) with the contracts, a
PostgreSQL database (127.0.0.1:5432, user postgres), an OIDC issuer (tests/support), and one
``ovpp-wallet serve`` in production mode (``bench.throughput.processes``: the relayer and
onramp processor outside it, the indexer inside it as by default). ``--connections`` customers
are provisioned through the API and each gets an OVPP mint on chain; the run starts once the
index has caught up (every customer's indexed balance is its mint).

The load generator is this process: Python asyncio on uvloop with aiohttp, one keep-alive
connection per customer, each sending its pre-built request (body bytes and headers) as soon
as the previous answer is read (closed loop), on the same two cores as the server. Phases of
``--seconds`` alternate email, balances, email, balances after a warm-up of each; a request
counts if it answered 200 without ``errors``. With ``--profile``, the server runs under
cProfile (``bench.profiled_serve``) switched on for the balances phases only."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pstats
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

from bench.harness import (
    DATABASE_PREFIX,
    POSTGRES_ADMIN_URL,
    local_chain,
    mint_call,
    percentile,
    process_cpu_seconds,
    say,
    send_in_nonce_order,
)
from bench.throughput.processes import start_api_processes, stop_process
from chain.profiles import ANVIL_DEV_PRIVATE_KEY
from chain.rpc import JsonRpc
from core.settings import load_settings
from core.tenant_config import TenantConfig
from devsupport.databases import fresh_database
from wallet.kms import LocalKeyEncryptionKey

AUDIENCE = "https://wallet.ovpp.bench"
MINT = 1_000 * 10**18
EMAIL = "{ viewer { email } }"
BALANCES = (
    "{ viewer { wallet { balances { token { symbol } amount raw pending } asOfBlock stale } } }"
)
ADDRESS = "{ viewer { wallet { address } } }"


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--profile", type=Path, default=None)
    return parser.parse_args(argv)


def body_of(query: str) -> bytes:
    return json.dumps({"query": query}).encode()


async def post(session: aiohttp.ClientSession, url: str, body: bytes, token: str) -> Any:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with session.post(url, data=body, headers=headers) as response:
        answer = await response.json(content_type=None)
    if response.status != 200 or answer.get("errors"):
        raise RuntimeError(f"HTTP {response.status}: {answer.get('errors')}")
    return answer["data"]


async def phase(
    session: aiohttp.ClientSession, url: str, body: bytes, tokens: list[str], seconds: float
) -> tuple[list[float], int]:
    """Closed loop on every connection for ``seconds``: latencies of the good answers, and
    how many failed."""
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds

    async def connection(token: str) -> None:
        nonlocal failures
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        while (started := time.perf_counter()) < deadline:
            async with session.post(url, data=body, headers=headers) as response:
                answer = await response.read()
            if response.status == 200 and b'"errors"' not in answer:
                latencies.append(time.perf_counter() - started)
            else:
                failures += 1

    await asyncio.gather(*(connection(token) for token in tokens))
    return latencies, failures


async def provision(
    session: aiohttp.ClientSession, url: str, issuer: Any, rpc: JsonRpc, args: Any, book: Any
) -> list[str]:
    """``--connections`` customers with a wallet each, minted ``MINT`` OVPP; returns their
    bearer tokens once the index holds every mint."""
    tokens, addresses = [], []
    for index in range(args.connections):
        subject = f"rate-{index}-{uuid.uuid4().hex[:8]}"
        token = issuer.mint(
            sub=subject, email=f"{subject}@example.com", exp=int(time.time()) + 7200
        )
        data = await post(session, url, body_of(ADDRESS), token)
        tokens.append(token)
        addresses.append(data["viewer"]["wallet"]["address"])
    chain_id = int(await rpc.call("eth_chainId"), 16)
    calls = [mint_call(book.ovpp_token, address, MINT) for address in addresses]
    await send_in_nonce_order(
        rpc, private_key=ANVIL_DEV_PRIVATE_KEY, calls=calls, chain_id=chain_id
    )
    deadline = time.monotonic() + 120
    while True:
        answers = [await post(session, url, body_of(BALANCES), token) for token in tokens]
        raws = [
            next(
                b["raw"]
                for b in a["viewer"]["wallet"]["balances"]
                if b["token"]["symbol"] == "OVPP"
            )
            for a in answers
        ]
        if all(int(raw) == MINT for raw in raws) and not answers[0]["viewer"]["wallet"]["stale"]:
            say(f"{len(tokens)} customers minted; the index caught up")
            return tokens
        if time.monotonic() > deadline:
            raise TimeoutError("the index did not catch up with the mints")
        await asyncio.sleep(0.5)


async def measure(
    session: aiohttp.ClientSession, url: str, tokens: list[str], args: Any, server: Any
) -> dict[str, dict[str, float]]:
    bodies = {"email": body_of(EMAIL), "balances": body_of(BALANCES)}
    for body in bodies.values():
        await phase(session, url, body, tokens, args.warmup)
    results: dict[str, dict[str, Any]] = {
        name: {"latencies": [], "failures": 0, "seconds": 0.0, "server_cpu": 0.0, "load_cpu": 0.0}
        for name in bodies
    }
    for name in ("email", "balances", "email", "balances"):
        if args.profile is not None and name == "balances":
            server.send_signal(signal.SIGUSR1)
        cpu, own, started = (
            process_cpu_seconds(server.pid),
            time.process_time(),
            time.perf_counter(),
        )
        latencies, failures = await phase(session, url, bodies[name], tokens, args.seconds)
        result = results[name]
        result["seconds"] += time.perf_counter() - started
        result["server_cpu"] += process_cpu_seconds(server.pid) - cpu
        result["load_cpu"] += time.process_time() - own
        result["latencies"] += latencies
        result["failures"] += failures
        if args.profile is not None and name == "balances":
            server.send_signal(signal.SIGUSR2)
        say(f"  {name}: {len(latencies) / (time.perf_counter() - started):,.0f} requests/s")
    return {name: summary(result) for name, result in results.items()}


def summary(result: dict[str, Any]) -> dict[str, float]:
    latencies, seconds = result["latencies"], result["seconds"]
    return {
        "requests": len(latencies),
        "failures": result["failures"],
        "rate": len(latencies) / seconds,
        "p50_ms": percentile(latencies, 0.5) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
        "server_cpu_ms": result["server_cpu"] / max(len(latencies), 1) * 1e3,
        "load_cpu_ms": result["load_cpu"] / max(len(latencies), 1) * 1e3,
    }


async def run(args: argparse.Namespace) -> int:
    from tests.support.issuer import TestIssuer

    with local_chain() as stack:
        async with fresh_database(
            "postgresql",
            directory=stack.workdir,
            admin_url=POSTGRES_ADMIN_URL,
            prefix=DATABASE_PREFIX,
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
                tenants=[
                    TenantConfig(
                        slug="bench-utility",
                        name="Bench Utility",
                        issuer=issuer.issuer,
                        audience=AUDIENCE,
                    )
                ],
                log_level="WARNING",
            )
            [(server, url)] = start_api_processes(
                settings, stack.workdir, 1, profile_to=args.profile
            )
            rpc = JsonRpc(stack.chain.rpc_url, timeout_seconds=30)
            try:
                async with aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=args.connections),
                    timeout=aiohttp.ClientTimeout(total=60),
                ) as session:
                    tokens = await provision(session, url, issuer, rpc, args, stack.contracts)
                    return report(args, await measure(session, url, tokens, args, server))
            finally:
                await rpc.close()
                stop_process(server)
                issuer.stop()


def report(args: argparse.Namespace, figures: dict[str, dict[str, float]]) -> int:
    for name, figure in figures.items():
        say(
            f"{name:<9} {figure['rate']:7,.0f} requests/s  p50 {figure['p50_ms']:6.1f} ms  "
            f"p99 {figure['p99_ms']:6.1f} ms  ({figure['requests']:,.0f} answers, "
            f"{figure['failures']:.0f} failed; CPU per request: server "
            f"{figure['server_cpu_ms']:.2f} ms, load generator {figure['load_cpu_ms']:.2f} ms)"
        )
    share = figures["balances"]["rate"] / figures["email"]["rate"]
    p99 = figures["balances"]["p99_ms"]
    say(
        f"balances at {share:.0%} of the email rate (target ≥ 60 %), p99 {p99:.1f} ms "
        f"(target ≤ 50 ms) at {args.connections} connections; "
        f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    if args.profile is not None:
        time.sleep(2)  # the server writes the profile on SIGUSR2
        pstats.Stats(str(args.profile)).sort_stats("cumulative").print_stats(40)
    return 0 if share >= 0.6 and p99 <= 50 else 1


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    os.chdir(Path(__file__).resolve().parent.parent)
    raise SystemExit(uvloop.run(run(args)))


if __name__ == "__main__":
    main()
