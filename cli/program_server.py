"""``program-server``: the OpenADR 2.0b VTN of the utilities' programs as its own process."""

from __future__ import annotations

import asyncio

import click

from cli.common import cli_settings, configure_logging


@click.command("program-server")
def program_server() -> None:
    """Run the program server (OpenADR 2.0b VTN, docs/program-server.md) as its own process;
    set OVPP_PROGRAM_SERVER_IN_SERVE=false for serve then. Outside development it needs TLS
    with client certificates (OVPP_PROGRAM_SERVER_TLS_CERT_FILE, _TLS_KEY_FILE,
    _CLIENT_CA_FILE). One per host and port; its state is in the database."""
    import signal

    from core.db import Database
    from programs.vtn.server import start_program_server

    settings = cli_settings()
    configure_logging(settings)

    async def run() -> None:
        db = Database(settings.resolved_database_url, pool_size=settings.database_pool_size)
        try:
            running = await start_program_server(db=db, settings=settings)
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, running.stop.set)
            click.echo(
                f"program server at {settings.resolved_program_server_url or 'its TLS address'} "
                "(Ctrl-C stops it)"
            )
            await running.task
        finally:
            await db.dispose()

    asyncio.run(run())
