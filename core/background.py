"""A loop running as a task of the current event loop (the relayer worker, the onramp
processor, the app webhooks' sender), its rounds, and its orderly stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
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


async def run_rounds(
    name: str,
    tick: Callable[[], Awaitable[bool]],
    *,
    stop: asyncio.Event,
    wake: asyncio.Event,
    poll_seconds: float,
    log: logging.Logger,
) -> None:
    """A worker's loop: ``tick`` again at once while it reports work done, else wait for
    ``wake`` or ``poll_seconds``; a round that raises is logged and the loop goes on."""
    log.info("%s: started", name)
    while not stop.is_set():
        try:
            busy = await tick()
        except Exception:
            log.exception("%s: round failed", name)
            busy = False
        if busy or stop.is_set():
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=poll_seconds)
        wake.clear()
    log.info("%s: stopped", name)
