"""``dev-token`` and ``balances``: sign in and look, as a customer's app would."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import click

from cli.common import cli_settings

if TYPE_CHECKING:
    from devsupport.battery import SimulatedBattery


@click.command("dev-token")
@click.option("--email", required=True, help="Who signs in (any address: development only).")
@click.option(
    "--scope",
    default="openid email wallet:read wallet:sign",
    show_default=True,
    help="Space-separated scopes to ask for.",
)
def dev_token(email: str, scope: str) -> None:
    """Print an access token from the development OpenID Provider, obtained through its real
    authorization-code + PKCE login flow. `serve` must be running."""
    from devsupport.oidc_login import DevLoginError, obtain_access_token

    settings = cli_settings()
    if not settings.is_development:
        raise click.ClickException("dev-token works only with OVPP_ENVIRONMENT=development")
    try:
        token = asyncio.run(
            obtain_access_token(
                issuer=settings.dev_issuer, email=email, scope=scope, resource=settings.dev_audience
            )
        )
    except DevLoginError as error:
        raise click.ClickException(f"{error} (is `make run` running?)") from error
    except OSError as error:
        raise click.ClickException(
            f"the development sign-in at {settings.dev_issuer} is not reachable: start `make run`"
        ) from error
    click.echo(token)


@click.command()
@click.option("--token", envvar="OVPP_ACCESS_TOKEN", help="An access token (or OVPP_ACCESS_TOKEN).")
@click.option("--email", help="Development only: sign in as this address through the dev provider.")
@click.option("--url", default=None, help="The API (default: this configuration's host and port).")
def balances(token: str | None, email: str | None, url: str | None) -> None:
    """Show a customer's wallet balances, read from the chain, through the GraphQL API with the
    typed client (clients/python) — the same calls a utility's app makes."""
    from ovpp_client import WalletApiError, WalletClient

    settings = cli_settings()
    if token is None and email is None:
        raise click.ClickException("give --token (or OVPP_ACCESS_TOKEN), or --email in development")
    if token is None:
        from devsupport.oidc_login import obtain_access_token

        token = asyncio.run(
            obtain_access_token(
                issuer=settings.dev_issuer, email=email or "", resource=settings.dev_audience
            )
        )

    async def run() -> None:
        async with WalletClient.open(
            url or f"http://{settings.host}:{settings.port}", access_token=token
        ) as client:
            viewer = await client.viewer_balances()
        click.echo(f"{viewer.email or viewer.id}  {viewer.address}")
        for balance in viewer.balances:
            click.echo(f"  {balance.token.symbol:>6}  {balance.amount}")

    try:
        asyncio.run(run())
    except WalletApiError as error:
        raise click.ClickException(f"{error} ({error.code})") from error
    except OSError as error:
        raise click.ClickException(
            f"the API is not reachable: {error} (is `make run` running?)"
        ) from error


@click.group("dev")
def dev() -> None:
    """Development-only tools."""


@dev.command("device")
@click.option("--enrollment", "enrollment_id", required=True, help="An ACTIVE enrollment's id.")
@click.option("--soc", default=80.0, show_default=True, help="State of charge to start at, %.")
@click.option(
    "--speed", default=1.0, show_default=True, help="The battery's clock, times real time."
)
def device(enrollment_id: str, soc: float, speed: float) -> None:
    """Run a simulated home battery as the OpenADR 2.0b VEN of an ACTIVE enrollment, configured
    from nothing but its connectionParameters: it registers, reports power and state of charge
    every few seconds, opts in to events within its customer's limits and discharges at their
    level. Ctrl-C stops it."""
    import signal

    from core.db import Database
    from devsupport.battery import BatteryModel, SimulatedBattery, run_battery
    from programs.vtn.customer import enrollment_for_device

    settings = cli_settings()
    if not settings.is_development:
        raise click.ClickException("dev device works only with OVPP_ENVIRONMENT=development")

    async def run() -> None:
        db = Database(settings.resolved_database_url)
        try:
            async with db.session() as session:
                found = await enrollment_for_device(session, enrollment_id)
        finally:
            await db.dispose()
        if found is None:
            raise click.ClickException(f"no ACTIVE OpenADR 2.0b enrollment {enrollment_id}")
        parameters, make, model = found
        battery = SimulatedBattery(model=BatteryModel.of(make, model), soc_percent=soc)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        click.echo(f"{make} {model} as {parameters['venName']} at {parameters['vtnUrl']}")
        reporter = loop.create_task(_print_state(battery, stop))
        try:
            await run_battery(parameters, battery, stop=stop, speed=speed)
        except RuntimeError as error:
            raise click.ClickException(str(error)) from error
        finally:
            stop.set()
            await reporter

    asyncio.run(run())


async def _print_state(battery: SimulatedBattery, stop: asyncio.Event) -> None:
    while not stop.is_set():
        click.echo(f"power {battery.power_kw:+.2f} kW  state of charge {battery.soc_percent:.1f} %")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=5)
