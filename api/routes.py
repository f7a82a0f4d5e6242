"""Plain starlette routes: health checks stay off the GraphQL path."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse

from api.container import Services


async def healthz(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "alive"})


async def readyz(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    database_ok, chain_ok = await asyncio.gather(
        _database_ready(services), services.chain.is_ready()
    )
    checks = {"database": database_ok, "chain": chain_ok}
    ready = all(checks.values())
    body: dict[str, object] = {"status": "ready" if ready else "not ready", "checks": checks}
    relayer = getattr(request.app.state, "relayer", None)
    if relayer is not None:
        # How many keys need attention, not which: this route is public. The worker's log names
        # each key's address once, and /metrics (behind its token) has every key's balance.
        worker = relayer.worker
        body["relayer"] = {
            "running": not relayer.task.done(),
            "lowBalanceKeys": len(worker.low_balance_keys),
            "unauthorizedKeys": len(worker.unauthorized_keys),
        }
        if relayer.task.done():
            body["status"], ready = "not ready", False
    onramp = getattr(request.app.state, "onramp_processor", None)
    if onramp is not None:
        body["onrampProcessor"] = {"running": not onramp.task.done()}
        if onramp.task.done():
            body["status"], ready = "not ready", False
    indexer = getattr(request.app.state, "indexer", None)
    if indexer is not None:
        # The lag is reported, not judged: a backfill after a first start lags by design.
        lag = indexer.indexer.lag_blocks
        body["indexer"] = {
            "running": not indexer.task.done(),
            "lagBlocks": lag,
            "stale": lag is None or lag > indexer.indexer.settings.indexer_stale_blocks,
        }
        if indexer.task.done():
            body["status"], ready = "not ready", False
    return JSONResponse(body, status_code=200 if ready else 503)


async def _database_ready(services: Services) -> bool:
    try:
        async with asyncio.timeout(3):
            async with services.db.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        return True
    except Exception:  # readiness probe: any failure means not ready
        return False
