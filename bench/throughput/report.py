"""The figures of a run (rates, latencies, CPU, PostgreSQL backends) and their summary."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from api.container import Services
from bench.harness import percentile
from bench.throughput.load import Outcome
from relayer.models import RelayStatus, RelayTransaction


async def figures_of(services: Services, outcome: Outcome) -> dict[str, Any]:
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


def print_summary(
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


def jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {key: str(value) if isinstance(value, Path) else value for key, value in values.items()}
