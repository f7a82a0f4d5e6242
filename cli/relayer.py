"""``relayer`` and ``relayer-authorize``: the relayer worker as its own process, and the
forwarder's consent to the relayer keys."""

from __future__ import annotations

import asyncio

import click

from cli.common import cli_settings, configure_logging


@click.command()
def relayer() -> None:
    """Run the relayer worker as its own process (scale out: several may share PostgreSQL)."""
    import os
    import signal
    import threading

    # Stop requests are honoured from the very start, even during the imports and start-up
    # below: a SIGTERM then ends the process cleanly instead of killing it mid-way.
    stop_requested = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop_requested.set())

    import uvloop

    from api.container import Services
    from relayer.runner import start_relayer

    settings = cli_settings()
    configure_logging(settings)

    async def run() -> None:
        services = await Services.start(settings, writes_trust=False)
        try:
            if stop_requested.is_set():
                return
            running = await start_relayer(services, name=f"relayer-{os.getpid()}")
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, running.stop.set)
            if stop_requested.is_set():
                running.stop.set()
            click.echo(f"relayer worker running (pid {os.getpid()}); Ctrl-C stops it")
            await running.task
        finally:
            await services.close()

    uvloop.run(run())  # asyncpg and aiohttp spend ~30 % less CPU on uvloop's event loop


@click.command("relayer-authorize")
def relayer_authorize() -> None:
    """Let the forwarder accept the relayer keys' transactions (it refuses any other sender).
    Signed by the forwarder's owner, the deploying account (OVPP_DEPLOYER_PRIVATE_KEY); local
    chains need no step, the relayer authorizes its keys itself. Creates the keys if needed."""
    from api.container import Services
    from chain.profiles import deployer_key
    from relayer.keys import authorize_keys, ensure_relayer_keys

    settings = cli_settings()

    async def run() -> tuple[list[str], list[str]]:
        services = await Services.start(settings, writes_trust=False)
        try:
            keys = await ensure_relayer_keys(services, count=settings.relayer_keys)
            addresses = [key.address for key in keys]
            owner_key = deployer_key(settings, services.chain.profile)
            return addresses, await authorize_keys(services, addresses, owner_key=owner_key)
        finally:
            await services.close()

    addresses, added = asyncio.run(run())
    for address in addresses:
        state = "authorized now" if address in added else "already authorized"
        click.echo(f"relayer key {address}: {state}")
