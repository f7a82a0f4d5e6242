"""A loop running as a task of the current event loop (the relayer worker, the onramp
processor), and its orderly stop."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

SHUTDOWN_TIMEOUT_SECONDS = 15


@dataclass
class BackgroundLoop:
    stop: asyncio.Event
    task: asyncio.Task[None]

    def wake(self) -> None:
        """Cut the loop's idle wait short (a loop that has one overrides this)."""

    async def shutdown(self) -> None:
        """Ask the loop to stop after its current round, and wait for it."""
        self.stop.set()
        self.wake()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.task, timeout=SHUTDOWN_TIMEOUT_SECONDS)
