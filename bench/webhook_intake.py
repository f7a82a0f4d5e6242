"""Stripe webhook intake: signed events per second into ``POST /webhooks/stripe`` of
``ovpp-wallet serve`` processes, as deployed, and the latency of each answer.

    .venv/bin/python -m bench.webhook_intake --events 20000 --concurrency 16
    .venv/bin/python -m bench.webhook_intake --api-processes 2 --db sqlite
    .venv/bin/python -m bench.webhook_intake --events 5000 --profile /tmp/serve.prof

Everything is fresh and thrown away: anvil with the contracts (``serve`` needs a chain), the
database (a throwaway PostgreSQL database on 127.0.0.1:5432 as user postgres, or a SQLite
file), and ``--api-processes`` × ``ovpp-wallet serve`` in production mode with Stripe
configured and the onramp processor off (intake alone: acting on an event is the processor's
job, after the answer). Every event is signed before the clock starts (so a run must finish
within Stripe's 300 s tolerance) and ``--duplicates`` of them are delivered twice, half of the
redeliveries while the original may still be in flight. The load runs in this process over
``--concurrency`` keep-alive connections.

Timed: events/s (first request sent → last answer in) and the latency of each answer
(p50/p95/p99/max); CPU seconds per event of the API processes, the PostgreSQL backends and
this process (the load). Checked, and the exit status is non-zero otherwise: every request
answered 200, exactly the redeliveries answered ``duplicate``, and the database holds exactly
one row per unique event id.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text

from bench.harness import (
    DATABASE_PREFIX,
    POSTGRES_ADMIN_URL,
    CpuMeter,
    local_chain,
    percentile,
    postgres_backends_of,
    say,
)
from bench.throughput.processes import start_api_processes, stop_process
from bench.webhooks.load import EVENT_PREFIX, Answers, send_all, signed_deliveries
from core.db import Database
from core.settings import load_settings
from devsupport.databases import fresh_database
from onramp.models import StripeEvent
from wallet.kms import LocalKeyEncryptionKey

WEBHOOK_SECRET = "whsec_bench_webhook_intake_0123456789"  # noqa: S105 (a throwaway endpoint)


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.webhook_intake",
        description="Signed Stripe webhook events per second into `ovpp-wallet serve`.",
    )
    parser.add_argument("--events", type=int, default=20_000, help="unique events to send")
    parser.add_argument(
        "--duplicates", type=float, default=0.1, help="share of events delivered twice"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--db", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument(
        "--api-processes", type=int, default=1, help="`ovpp-wallet serve` processes"
    )
    parser.add_argument("--pool-size", type=int, default=None, help="OVPP_DATABASE_POOL_SIZE")
    parser.add_argument("--warmup", type=int, default=500, help="events sent before timing")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="run the first server under cProfile and write its profile here",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    say(
        f"{args.events} signed events (+{args.duplicates:.0%} redelivered), {args.db}, "
        f"concurrency {args.concurrency}, {args.api_processes} API process(es); "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    with local_chain() as stack:
        async with fresh_database(
            args.db, directory=stack.workdir, admin_url=POSTGRES_ADMIN_URL, prefix=DATABASE_PREFIX
        ) as database_url:
            settings = load_settings(
                environment="production",
                data_dir=stack.workdir / "data",
                database_url=database_url,
                rpc_url=stack.chain.rpc_url,
                address_book=stack.address_book_path,
                kek=LocalKeyEncryptionKey.generate_base64(),
                stripe_api_key="sk_test_bench_not_called",
                stripe_api_base="http://127.0.0.1:9",  # the processor is off: never called
                stripe_webhook_secret=WEBHOOK_SECRET,
                log_level="WARNING",
                **({"database_pool_size": args.pool_size} if args.pool_size else {}),
            )
            servers = start_api_processes(
                settings,
                stack.workdir,
                args.api_processes,
                path="/webhooks/stripe",
                profile_to=args.profile,
            )
            try:
                figures = await _measure(args, servers, database_url)
            finally:
                for process, _url in servers:
                    stop_process(process)
            figures["rows"] = await _stored_rows(database_url)
    return _report(args, figures)


async def _measure(
    args: argparse.Namespace, servers: list[Any], database_url: str
) -> dict[str, Any]:
    urls = [url for _process, url in servers]
    warmup = signed_deliveries(
        url=urls[0], secret=WEBHOOK_SECRET, events=args.warmup, duplicate_share=0.0
    )
    await send_all(urls, warmup, concurrency=args.concurrency)
    if args.profile:  # bench.profiled_serve: profile the measured load only
        servers[0][0].send_signal(signal.SIGUSR1)
    deliveries = signed_deliveries(
        url=urls[0], secret=WEBHOOK_SECRET, events=args.events, duplicate_share=args.duplicates
    )
    say(f"{len(warmup)} warm-up events sent; {len(deliveries)} deliveries signed, sending")
    meter = CpuMeter()
    database = database_url.rsplit("/", 1)[1]
    pids = {process.pid: "api" for process, _url in servers} | {os.getpid(): "load"}
    if args.db == "postgresql":
        backends = postgres_backends_of(database)
        say(f"metering {len(backends)} PostgreSQL backend(s) of {database}")
        pids |= {pid: "postgres" for pid in backends}
    sessions_before = await _sessions_opened(args.db, database_url)
    meter.start(pids)
    machine_before = machine_busy_seconds()
    answers = await send_all(urls, deliveries, concurrency=args.concurrency)
    if args.profile:
        servers[0][0].send_signal(signal.SIGUSR2)  # writes the profile
    cpu = meter.stop({}) | {"machine": machine_busy_seconds() - machine_before}
    return {
        "answers": answers,
        "cpu": cpu,
        "connections_opened": await _sessions_opened(args.db, database_url) - sessions_before,
        "unique": args.events + args.warmup,
    }


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (``/proc/stat``: all but idle and iowait),
    which includes what the other processes on a shared machine used."""
    ticks = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


async def _sessions_opened(backend: str, database_url: str) -> int:
    """Connections ever opened to the database (PostgreSQL's ``pg_stat_database.sessions``,
    counted with some delay; 0 on SQLite): a pool too small for the load opens and closes
    overflow connections all the time."""
    if backend != "postgresql":
        return 0
    database = Database(database_url)
    try:
        async with database.session() as session:
            await session.execute(text("SELECT pg_stat_clear_snapshot()"))
            statement = text(
                "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
            )
            return int((await session.execute(statement)).scalar_one())
    finally:
        await database.dispose()


async def _stored_rows(database_url: str) -> tuple[int, int]:
    """(rows, distinct event ids) of the bench's events in the database."""
    database = Database(database_url)
    try:
        async with database.session() as session:
            statement = select(
                func.count(), func.count(func.distinct(StripeEvent.stripe_event_id))
            ).where(StripeEvent.stripe_event_id.like(f"{EVENT_PREFIX}%"))
            rows, distinct = (await session.execute(statement)).one()
    finally:
        await database.dispose()
    return int(rows), int(distinct)


def _report(args: argparse.Namespace, figures: dict[str, Any]) -> int:
    answers: Answers = figures["answers"]
    elapsed = answers.finished - answers.started
    sent = len(answers.latencies)
    latencies_ms = [latency * 1000 for latency in answers.latencies]
    rows, distinct = figures["rows"]
    summary = {
        "events_per_second": round(sent / elapsed, 1),
        "requests": sent,
        "seconds": round(elapsed, 2),
        "latency_ms": {
            name: round(percentile(latencies_ms, fraction), 1)
            for name, fraction in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))
        },
        "statuses": answers.statuses,
        "redeliveries_sent": answers.redeliveries_sent,
        "answered_duplicate": answers.answered_duplicate,
        "duplicate_share": round(answers.redeliveries_sent / sent, 3),
        "cpu_ms_per_event": {
            name: round(seconds * 1000 / sent, 3) for name, seconds in figures["cpu"].items()
        },
        "connections_opened": figures["connections_opened"],
        "stored_rows": rows,
        "stored_distinct_ids": distinct,
        "unique_ids": figures["unique"],
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    problems = []
    if answers.statuses != {200: sent}:
        problems.append(f"not every answer was 200: {answers.statuses}")
    if answers.answered_duplicate != answers.redeliveries_sent:
        problems.append(
            f"{answers.answered_duplicate} answered duplicate, "
            f"{answers.redeliveries_sent} redeliveries sent"
        )
    if rows != figures["unique"] or distinct != figures["unique"]:
        problems.append(f"{rows} rows ({distinct} distinct ids) for {figures['unique']} events")
    for problem in problems:
        say(f"CHECK FAILED: {problem}")
    if not problems:
        say("checks passed: all 200, exactly the redeliveries answered duplicate, one row per id")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> None:
    sys.exit(asyncio.run(run(parse_arguments(argv))))


if __name__ == "__main__":
    main()
