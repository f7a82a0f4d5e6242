"""Telemetry ingest of the program server: can one machine take 10,000 devices reporting once a
minute (10,000 / 60 ≈ 167 oadrUpdateReport messages a second, two samples each)?

The real program server (``ovpp-wallet program-server``, OpenLEADR over HTTP, development mode)
runs in its own process on a fresh migrated database holding ``--devices`` registered VENs with
their report streams (seeded directly; their enrollments' own parents are not needed, so foreign
keys are off while seeding only). The load generator sends each VEN's oadrUpdateReport
(OpenLEADR's own messages, rendered before the clock starts): first open-loop at ``--rate`` a
second for ``--seconds`` (does ingest keep up, and at what latency), then closed-loop with
``--concurrency`` requests in flight (what it sustains at most). Reported: reports/s and
samples/s, p50/p99 latency, the server's CPU per report (and PostgreSQL's), rows stored.

    python -m bench.telemetry_ingest --db sqlite|postgresql [--devices 10000] [--rate 167]
        [--seconds 60] [--concurrency 16] [--profile FILE]

``--profile FILE`` runs the program server under cProfile for the closed-loop phase and writes
the stats to FILE (``python -m pstats FILE``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from openleadr import objects
from openleadr.messaging import create_message
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.harness import (
    DATABASE_PREFIX,
    POSTGRES_ADMIN_URL,
    CpuMeter,
    free_port,
    percentile,
    postgres_backends_of,
    say,
)
from core.program_server_settings import OPENADR_PATH_PREFIX
from devsupport.databases import fresh_database
from programs.models import Enrollment
from programs.vtn.models import DeviceReading, ReportStream, Ven

REPOSITORY = Path(__file__).resolve().parents[1]
XML = {"content-type": "application/xml"}


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=10_000 / 60, help="reports a second")
    parser.add_argument("--seconds", type=float, default=30.0, help="the open-loop phase")
    parser.add_argument("--concurrency", type=int, default=16, help="the closed-loop phase")
    parser.add_argument("--profile", default=None)
    return parser.parse_args(argv)


async def seed(database_url: str, devices: int) -> None:
    """``devices`` registered VENs, each with an enrollment row and its two report streams."""
    engine = create_async_engine(database_url)
    now = dt.datetime.now(dt.UTC)
    try:
        async with engine.begin() as connection:
            if database_url.startswith("postgresql"):
                await connection.execute(text("SET LOCAL session_replication_role = replica"))
            for first in range(0, devices, 2000):
                batch = range(first, min(devices, first + 2000))
                await connection.execute(
                    insert(Enrollment.__table__),
                    [
                        {
                            "id": f"enr-{i}", "customer_id": "bench", "device_row_id": "bench",
                            "program_row_id": "bench", "tenant_id": "bench",
                            "protocol": "OPENADR_2_0B", "payment_method": "SPONSOR",
                            "status": "ACTIVE", "idempotency_key": f"k-{i}",
                            "request_fingerprint": "bench", "fee_amount": 0, "routing": {},
                            "created_at": now, "updated_at": now,
                        }
                        for i in batch
                    ],
                )  # fmt: skip
                await connection.execute(
                    insert(Ven.__table__),
                    [
                        {
                            "id": f"ven-{i}", "ven_name": f"bench-{i}", "enrollment_id": f"enr-{i}",
                            "program_row_id": "bench", "tenant_id": "bench",
                            "status": "PROVISIONED", "ven_id": f"VEN-{i}",
                            "registration_id": f"REG-{i}", "registered_at": now,
                            "provisioned_at": now,
                        }
                        for i in batch
                    ],
                )  # fmt: skip
                await connection.execute(
                    insert(ReportStream.__table__),
                    [
                        {
                            "id": f"rs-{i}-{r_id}", "ven_row_id": f"ven-{i}",
                            "report_request_id": f"rr-{i}", "r_id": r_id,
                            "resource_id": "battery-1", "measurement": measurement,
                            "unit": unit, "scale": scale, "reading_type": "Direct Read",
                            "created_at": now,
                        }
                        for i in batch
                        for r_id, measurement, unit, scale in (
                            ("p", "power_real", "W", "k"), ("s", "state_of_charge", "%", None)
                        )
                    ],
                )  # fmt: skip
    finally:
        await engine.dispose()


def update_report(device: int, at: dt.datetime) -> bytes:
    """The oadrUpdateReport an OpenLEADR VEN sends for one sampling: power and state of charge."""
    intervals = [
        objects.ReportInterval(
            dtstart=at, report_payload=objects.ReportPayload(r_id=r_id, value=value)
        )
        for r_id, value in (("p", -2.5), ("s", 64.0))
    ]
    report = objects.Report(
        report_request_id=f"rr-{device}",
        report_specifier_id=f"spec-{device}",
        report_name="TELEMETRY_USAGE",
        intervals=intervals,
        dtstart=at,
    )
    message = create_message(
        "oadrUpdateReport", ven_id=f"VEN-{device}", request_id=f"req-{device}", reports=[report]
    )
    return message.encode() if isinstance(message, str) else message


def start_server(database_url: str, port: int, workdir: Path, profile: str | None) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVPP_")} | {
        "OVPP_ENVIRONMENT": "development",
        "OVPP_DATA_DIR": str(workdir),
        "OVPP_DATABASE_URL": database_url,
        "OVPP_PROGRAM_SERVER_PORT": str(port),
        "OVPP_LOG_LEVEL": "WARNING",
        "PYTHONPATH": f"{REPOSITORY}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    command = [sys.executable, "-m", "cli.main", "program-server"]
    if profile:
        command = [sys.executable, "-m", "bench.telemetry_profiled", profile]
    log = (workdir / "program-server.log").open("w")
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPOSITORY)


async def wait_listening(url: str, timeout: float = 60) -> None:
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        while time.monotonic() - started < timeout:
            try:
                async with session.post(url, data=b"") as response:
                    await response.read()
                    return
            except aiohttp.ClientError:
                await asyncio.sleep(0.2)
    raise TimeoutError(f"the program server did not answer at {url}")


async def post(session: aiohttp.ClientSession, url: str, body: bytes) -> float:
    started = time.perf_counter()
    async with session.post(url, data=body, headers=XML) as response:
        answer = await response.read()
        if response.status != 200 or b"oadrUpdatedReport" not in answer:
            raise RuntimeError(f"{response.status}: {answer[:300]!r}")
    return time.perf_counter() - started


async def open_loop(url: str, bodies: list[bytes], rate: float) -> tuple[list[float], float]:
    """Send at ``rate`` a second whatever the answers (as 10,000 independent devices would)."""
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=512)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        tasks = []
        for index, body in enumerate(bodies):
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(session, url, body)))
        latencies = list(await asyncio.gather(*tasks))
        elapsed = time.perf_counter() - started
    return latencies, elapsed


async def closed_loop(url: str, bodies: list[bytes], concurrency: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    queue = list(reversed(bodies))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            while queue:
                latencies.append(await post(session, url, queue.pop()))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return latencies, elapsed


async def rows(database_url: str) -> int:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            return int(
                (
                    await connection.execute(select(func.count()).select_from(DeviceReading))
                ).scalar_one()
            )
    finally:
        await engine.dispose()


def phase(name: str, latencies: list[float], elapsed: float, cpu: dict[str, float]) -> None:
    reports = len(latencies)
    p50, p99 = (percentile(latencies, q) * 1000 for q in (0.5, 0.99))
    server, postgres = (cpu.get(part, 0.0) / reports * 1000 for part in ("server", "postgres"))
    say(
        f"{name}: {reports} reports in {elapsed:.1f} s = {reports / elapsed:.0f} reports/s "
        f"({2 * reports / elapsed:.0f} samples/s); latency p50 {p50:.1f} ms, p99 {p99:.1f} ms; "
        f"CPU per report: program server {server:.2f} ms, PostgreSQL {postgres:.2f} ms"
    )


async def run(args: argparse.Namespace) -> None:
    say(f"{args.devices} devices, {args.db}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="ovpp-bench-") as directory:
        workdir = Path(directory)
        async with fresh_database(
            args.db, directory=workdir, admin_url=POSTGRES_ADMIN_URL, prefix=DATABASE_PREFIX
        ) as database_url:
            await seed(database_url, args.devices)
            now = dt.datetime.now(dt.UTC).replace(microsecond=0)
            open_count = min(args.devices, int(args.rate * args.seconds))
            first = [update_report(i, now) for i in range(open_count)]
            second = [update_report(i, now + dt.timedelta(minutes=1)) for i in range(args.devices)]
            say(f"seeded; {len(first) + len(second)} messages rendered")
            port = free_port()
            url = f"http://127.0.0.1:{port}{OPENADR_PATH_PREFIX}/EiReport"
            server = start_server(database_url, port, workdir, args.profile)
            try:
                await wait_listening(url)
                pids = {server.pid: "server"}
                if args.db == "postgresql":
                    pids |= {
                        p: "postgres" for p in postgres_backends_of(database_url.rsplit("/", 1)[1])
                    }
                meter = CpuMeter()
                meter.start(pids)
                latencies, elapsed = await open_loop(url, first, args.rate)
                phase(f"open loop at {args.rate:.0f}/s", latencies, elapsed, meter.stop({}))
                if args.db == "postgresql":
                    pids |= {
                        p: "postgres" for p in postgres_backends_of(database_url.rsplit("/", 1)[1])
                    }
                meter.start(pids)
                latencies, elapsed = await closed_loop(url, second, args.concurrency)
                phase(
                    f"closed loop, {args.concurrency} in flight", latencies, elapsed, meter.stop({})
                )
            finally:
                server.send_signal(signal.SIGINT)
                server.wait(timeout=30)
                if os.environ.get("OVPP_BENCH_KEEP_LOG"):
                    print((workdir / "program-server.log").read_text()[-3000:])
            expected = 2 * (open_count + args.devices)
            say(f"rows stored: {await rows(database_url)} (expected {expected})")


def main(argv: list[str] | None = None) -> None:
    asyncio.run(run(parse_arguments(argv)))


if __name__ == "__main__":
    main()
