"""``indexer``: the chain indexer as its own process."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import click

from cli.common import cli_settings, configure_logging

if TYPE_CHECKING:
    from indexer.follow import CommittedRange

PROGRESS_EVERY_SECONDS = 2.0


class _ProgressLine:
    """A line every few seconds while catching up (blocks, transfers kept, logs a second), and
    one when caught up."""

    def __init__(self) -> None:
        self.started = self.shown = time.monotonic()
        self.logs_read = self.stored = 0
        self.caught_up = False

    def __call__(self, committed: CommittedRange) -> None:
        self.logs_read += committed.logs_read
        self.stored += committed.transfers_stored
        now = time.monotonic()
        at_head = committed.last >= committed.head
        if now - self.shown < PROGRESS_EVERY_SECONDS and not (at_head and not self.caught_up):
            return
        self.shown = now
        rate = self.logs_read / max(now - self.started, 1e-9)
        state = "caught up, following the chain" if at_head else "catching up"
        click.echo(
            f"block {committed.last:,} of {committed.head:,}: {self.stored:,} transfers kept "
            f"of {self.logs_read:,} logs read ({rate:,.0f} logs/s); {state}"
        )
        self.caught_up = at_head


@click.command()
def indexer() -> None:
    """Run the chain indexer as its own process: follows the chain's blocks and stores every
    transfer of OVPP and the stablecoin that touches a custodial wallet. Several may share
    PostgreSQL: one reads at a time (a lease), the others stand by."""
    import os
    import signal
    import threading

    stop_requested = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop_requested.set())

    import uvloop

    from api.container import Services
    from indexer.runner import start_indexer

    settings = cli_settings()
    configure_logging(settings)

    async def run() -> None:
        services = await Services.start(settings, writes_trust=False)
        try:
            if stop_requested.is_set():
                return
            running = await start_indexer(
                services, name=f"indexer-{os.getpid()}", on_commit=_ProgressLine()
            )
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, running.stop.set)
            if stop_requested.is_set():
                running.stop.set()
            click.echo(
                f"indexer running (pid {os.getpid()}) on chain {services.chain.profile.chain_id} "
                f"from block {settings.indexer_start_block} or its cursor; Ctrl-C stops it"
            )
            await running.task
        finally:
            await services.close()

    uvloop.run(run())
