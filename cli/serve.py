"""``serve``: the API, with the local stack it needs in development."""

from __future__ import annotations

import click

from cli.common import cli_settings, configure_logging


@click.command()
def serve() -> None:
    """Run the API. OVPP_ENVIRONMENT is required (`make run` sets development). In development,
    with nothing else configured: SQLite, a local anvil with persisted state, contracts deployed
    once, the development OpenID Provider and a funded demo customer. In production: an explicit
    OVPP_KEK and OVPP_METRICS_TOKEN, and no development stand-in."""
    import signal

    import uvicorn

    from api.app import create_app
    from api.container import load_keyring
    from cli.startup import started, startup_steps
    from core.production import require_production_ready
    from core.progress import Progress

    # A service manager stops with SIGTERM. Its default action ends the process at once, and
    # uvicorn re-raises the signal after its graceful shutdown: anvil, the provider and
    # localstripe would outlive serve and hold their ports. Raised as an exception instead,
    # it unwinds the start-up stack, which stops them (also when it comes during start-up).
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    settings = cli_settings()
    configure_logging(settings)
    # Fail before anything starts: otherwise a missing OVPP_KEK in production surfaces only
    # after anvil, migrations and deployment, as a traceback from the server's lifespan. In
    # production every development stand-in is refused at once, each one named.
    require_production_ready(settings)
    load_keyring(settings)
    progress = Progress(total=startup_steps(settings))
    try:
        with started(settings, progress):
            progress.done()
            click.echo(f"GraphQL:  http://{settings.host}:{settings.port}/graphql")
            if settings.resolved_program_server_in_serve:
                click.echo(f"OpenADR:  {settings.resolved_program_server_url} (program server)")
            if settings.is_development:
                click.echo(
                    "Token:    OVPP_ENVIRONMENT=development .venv/bin/ovpp-wallet dev-token "
                    "--email alice@example.com"
                )
            server = uvicorn.Server(
                uvicorn.Config(
                    create_app(
                        settings,
                        run_relayer=settings.relayer_in_serve,
                        run_onramp_processor=settings.onramp_processor_in_serve,
                        run_indexer=settings.indexer_in_serve,
                        run_program_server=settings.resolved_program_server_in_serve,
                        run_app_webhooks=settings.app_webhooks_in_serve,
                    ),
                    host=settings.host,
                    port=settings.port,
                    log_level=settings.log_level.lower(),
                    proxy_headers=False,
                    # The server refuses a larger WebSocket message before buffering it whole
                    # (the app checks too: api.websocket.SizedWebSocketAdapter).
                    ws_max_size=settings.graphql_max_body_bytes,
                )
            )
            server.run()
    except (KeyboardInterrupt, _Terminated):
        click.echo("stopped")


class _Terminated(BaseException):
    """SIGTERM, turned into an exception so ``with`` blocks clean up on the way out. A
    ``BaseException``, as ``KeyboardInterrupt`` is: no ``except Exception`` may swallow it."""


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated
