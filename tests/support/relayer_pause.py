"""Holding the test session's relayer worker still, so jobs stay where a test can see them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from api.container import Services
from relayer.runner import RunningRelayer, start_relayer


@contextlib.asynccontextmanager
async def relayer_paused(running: RunningRelayer, services: Services) -> AsyncIterator[None]:
    """The session's relayer worker stopped for the block (jobs stay QUEUED), then started
    again in place for the tests that follow."""
    try:
        await running.shutdown()
        yield
    finally:
        restarted = await start_relayer(services, name="test-relayer")
        running.worker, running.stop, running.task = (
            restarted.worker,
            restarted.stop,
            restarted.task,
        )
