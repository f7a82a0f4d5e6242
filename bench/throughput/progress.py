"""What the run shows while it runs: the pipeline's job counts each second, PostgreSQL's busy
backends, and the wait until every accepted transfer is final."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter

from sqlalchemy import func, select, text

from api.container import Services
from bench.harness import say
from bench.throughput.load import Outcome
from relayer.models import RelayStatus, RelayTransaction


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


async def report_progress(
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


async def wait_until_final(services: Services, outcome: Outcome, *, within_seconds: float) -> bool:
    deadline = time.monotonic() + within_seconds
    while time.monotonic() < deadline:
        counts = await _status_counts(services)
        final = sum(counts.get(s, 0) for s in ("CONFIRMED", "FAILED", "REPLACED"))
        if final >= len(outcome.accepted):
            return True
        await asyncio.sleep(0.2)
    return False
