"""``/readyz`` shows the lag of the indexer running in the process (stale beyond
``OVPP_INDEXER_STALE_BLOCKS``), and turns not ready when its loop has ended."""

from __future__ import annotations

import asyncio
import time

import httpx

from api.app import create_app
from indexer.runner import start_indexer
from tests.support.indexer import IndexerStack


async def test_readyz_shows_the_indexers_lag(indexer_stack: IndexerStack) -> None:
    stack = indexer_stack
    running = await start_indexer(stack.services, name="readyz-indexer")
    app = create_app(stack.settings, services=stack.services)
    app.state.indexer = running
    transport = httpx.ASGITransport(app=app)
    try:
        deadline = time.monotonic() + 30
        while running.indexer.lag_blocks != 0:
            assert time.monotonic() < deadline, running.indexer.lag_blocks
            await asyncio.sleep(0.02)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            response = await http.get("/readyz")
            assert response.status_code == 200, response.text
            assert response.json()["indexer"] == {"running": True, "lagBlocks": 0, "stale": False}

            await running.shutdown()
            response = await http.get("/readyz")
            assert response.status_code == 503, response.text
            assert response.json()["indexer"]["running"] is False
            stack.rpc("anvil_mine", hex(stack.settings.indexer_stale_blocks + 5))
            running.indexer.head = stack.head()  # the head as a last round would have seen it
            lagging = (await http.get("/readyz")).json()["indexer"]
            assert lagging["stale"] is True and lagging["lagBlocks"] > 12, lagging
    finally:
        await running.shutdown()
