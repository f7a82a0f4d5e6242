"""``keys``: custodial key management."""

from __future__ import annotations

import asyncio

import click

from cli.common import cli_settings


@click.group()
def keys() -> None:
    """Custodial key management."""


@keys.command()
def rewrap() -> None:
    """Re-wrap every wallet's data key under the current OVPP_KEK. Put the old key in
    OVPP_PREVIOUS_KEKS for the run. Resumable; private keys are never decrypted."""
    from api.container import load_keyring
    from core.db import Database
    from relayer.models import RelayerKey
    from wallet.models import Wallet
    from wallet.service import rewrap_all

    settings = cli_settings()
    keyring = load_keyring(settings)

    def report(done: int, total: int) -> None:
        click.echo(f"re-wrapped {done}/{total}")

    async def run() -> int:
        db = Database(settings.resolved_database_url)
        try:
            return await rewrap_all(
                db, keyring=keyring, models=[Wallet, RelayerKey], progress=report
            )
        finally:
            await db.dispose()

    count = asyncio.run(run())
    click.echo(f"done: {count} key(s) now under {keyring.current.key_id}")
