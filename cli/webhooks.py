"""``webhooks``: a utility's app webhook endpoints; ``app-webhooks``: their delivery worker."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from cli.common import cli_settings, configure_logging

EVENT_TYPES = ("activity.received", "transaction.final", "enrollment.changed")


@click.group()
def webhooks() -> None:
    """A utility's app webhook endpoints (docs/webhooks.md)."""


async def _tenant_id(session: Any, slug: str) -> str:
    from programs.repository import tenant_by_slug

    tenant = await tenant_by_slug(session, slug)
    if tenant is None:
        raise click.ClickException(f"no utility with slug {slug!r}")
    return tenant.id


def _in_session(work: Any) -> Any:
    """Runs ``work(session, settings)`` in one transaction of the configured database."""
    from core.db import Database

    settings = cli_settings()

    async def run() -> Any:
        db = Database(settings.resolved_database_url)
        try:
            async with db.session() as session:
                return await work(session, settings)
        finally:
            await db.dispose()

    return asyncio.run(run())


@webhooks.command("add")
@click.option("--utility", "slug", required=True, help="The utility's slug.")
@click.option("--url", required=True, help="Where to post (https outside development).")
@click.option(
    "--event",
    "events",
    multiple=True,
    type=click.Choice(EVENT_TYPES),
    help="An event type to receive (repeat it); none: every type.",
)
def webhooks_add(slug: str, url: str, events: tuple[str, ...]) -> None:
    """Add an endpoint and print its signing secret, shown this once."""
    from api.container import load_keyring
    from appwebhooks.service import create_endpoint

    async def work(session: Any, settings: Any) -> tuple[Any, str]:
        return await create_endpoint(
            session,
            tenant_id=await _tenant_id(session, slug),
            url=url,
            event_types=list(events),
            keyring=load_keyring(settings),
            allow_private=settings.is_development,
        )

    endpoint, secret = _in_session(work)
    click.echo(f"endpoint {endpoint.id} -> {endpoint.url}")
    click.echo(f"events   {', '.join(endpoint.event_types) or 'all'}")
    click.echo(f"secret   {secret}")
    click.echo("The secret is shown only now: configure the receiver with it.")


@webhooks.command("list")
@click.option("--utility", "slug", required=True, help="The utility's slug.")
def webhooks_list(slug: str) -> None:
    """The utility's endpoints, and their deliveries by status."""
    from sqlalchemy import func, select

    from appwebhooks.models import WebhookDelivery
    from appwebhooks.service import endpoints

    async def work(session: Any, _settings: Any) -> tuple[list[Any], dict[tuple[str, str], int]]:
        rows = await endpoints(session, await _tenant_id(session, slug))
        counts = (
            await session.execute(
                select(WebhookDelivery.endpoint_id, WebhookDelivery.status, func.count())
                .where(WebhookDelivery.endpoint_id.in_([row.id for row in rows]))
                .group_by(WebhookDelivery.endpoint_id, WebhookDelivery.status)
            )
        ).all()
        return rows, {(endpoint, status): count for endpoint, status, count in counts}

    rows, counts = _in_session(work)
    if not rows:
        click.echo("no endpoints")
    for row in rows:
        tally = ", ".join(
            f"{status.lower()} {counts.get((row.id, status), 0)}"
            for status in ("PENDING", "DELIVERED", "FAILED")
        )
        click.echo(
            f"{row.id}  {row.url}  events: {', '.join(row.event_types) or 'all'}  "
            f"created {row.created_at:%Y-%m-%d %H:%M} UTC  deliveries: {tally}"
        )


@webhooks.command("remove")
@click.option("--utility", "slug", required=True, help="The utility's slug.")
@click.argument("endpoint_id")
def webhooks_remove(slug: str, endpoint_id: str) -> None:
    """Delete an endpoint: its pending deliveries fail, its log stays."""
    from appwebhooks.service import delete_endpoint

    async def work(session: Any, _settings: Any) -> Any:
        return await delete_endpoint(
            session, tenant_id=await _tenant_id(session, slug), endpoint_id=endpoint_id
        )

    endpoint = _in_session(work)
    click.echo(f"deleted  {endpoint.id} ({endpoint.url})")


@click.command("app-webhooks")
def app_webhooks() -> None:
    """Run the app webhooks' delivery worker as its own process (set
    OVPP_APP_WEBHOOKS_IN_SERVE=false for serve then). Several may share PostgreSQL."""
    import os
    import signal

    from api.container import load_keyring
    from appwebhooks.delivery import start_app_webhooks
    from core.db import Database

    settings = cli_settings()
    configure_logging(settings)

    class _Services:
        def __init__(self) -> None:
            self.settings = settings
            self.db = Database(settings.resolved_database_url, pool_size=4)
            self.keyring = load_keyring(settings)

    async def run() -> None:
        services = _Services()
        running = await start_app_webhooks(services, name=f"app-webhooks-{os.getpid()}")
        loop = asyncio.get_running_loop()

        def stop() -> None:
            running.stop.set()
            running.wake()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop)
        click.echo(f"app webhooks worker running (pid {os.getpid()}); Ctrl-C stops it")
        await running.task
        await services.db.dispose()

    asyncio.run(run())
