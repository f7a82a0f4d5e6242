"""``rewards``: settling demand-response events' rewards on chain."""

from __future__ import annotations

import asyncio
import time

import click

from cli.common import cli_settings, configure_logging


@click.group()
def rewards() -> None:
    """Event rewards: contribution records and their settlement on chain."""


@rewards.command("settle")
@click.argument("event_id")
@click.option("--wait/--no-wait", default=True, help="Follow the settlement until it ends.")
@click.option("--timeout", default=600.0, help="Seconds to follow it at most.")
def rewards_settle(event_id: str, wait: bool, timeout: float) -> None:
    """Settle one ended event now (the processor settles ended events by itself): compute its
    contribution records once, publish and fund its root, pay its leaves. Safe to run again
    or next to the processor: every step happens once."""
    from api.container import Services
    from programs.rewards.models import OPEN_SETTLEMENTS, RewardSettlement
    from programs.rewards.records import compute_settlement
    from programs.rewards.settlement import advance
    from programs.vtn.models import DrEvent

    settings = cli_settings()
    configure_logging(settings)

    async def run() -> str:
        services = await Services.start(settings, writes_trust=False)
        try:
            async with services.db.session() as session:
                event = await session.get(DrEvent, event_id)
            if event is None:
                raise click.ClickException(f"no event {event_id}")
            settlement = await compute_settlement(services, event)
            click.echo(f"settlement {settlement.id}: {settlement.status}")
            deadline = time.monotonic() + timeout
            while True:
                moved = await advance(services, settlement.id)
                async with services.db.session() as session:
                    settlement = await session.get_one(RewardSettlement, settlement.id)
                if moved:
                    click.echo(f"settlement {settlement.id}: {settlement.status}")
                if not wait or settlement.status not in OPEN_SETTLEMENTS:
                    return settlement.status
                if time.monotonic() > deadline:
                    raise click.ClickException(f"still {settlement.status} after {timeout:.0f} s")
                await asyncio.sleep(0.2)
        finally:
            await services.close()

    click.echo(asyncio.run(run()))
