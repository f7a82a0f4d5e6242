"""``migrate`` and ``deploy``: the database schema and the contracts of the configured chain."""

from __future__ import annotations

import asyncio

import click

from cli.common import cli_settings


@click.command()
def migrate() -> None:
    """Bring the database schema to the newest migration."""
    from core.migrate import upgrade_to_head

    settings = cli_settings()
    asyncio.run(upgrade_to_head(settings.resolved_database_url))
    click.echo("database is at the newest migration")


@click.command()
def deploy() -> None:
    """Deploy the forwarder and tokens to the configured chain; write its address book."""
    from chain.address_book import address_book_path
    from chain.deploy import Deployer
    from chain.profiles import deployer_key, profile_from_settings

    settings = cli_settings()
    profile = profile_from_settings(settings)
    deployer = Deployer(
        rpc_url=settings.resolved_rpc_url,
        private_key=deployer_key(settings, profile),
        progress=click.echo,
    )
    book = deployer.deploy_all()
    path = address_book_path(settings, profile.chain_id)
    book.save(path)
    click.echo(f"address book written to {path}")
