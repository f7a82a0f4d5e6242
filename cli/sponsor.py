"""``sponsor``: gas sponsorship by a utility."""

from __future__ import annotations

import asyncio

import click

from cli.common import cli_settings


@click.group()
def sponsor() -> None:
    """Gas sponsorship by a utility."""


@sponsor.command("set")
@click.option("--tenant", "tenant_slug", required=True, help="The utility's slug.")
@click.option("--name", help="Shown to customers (default: the utility's name).")
@click.option("--add-funds", default="0", show_default=True, help="Native tokens to add, e.g. 0.5")
@click.option("--per-transaction-cap", help="Native tokens of gas at most per transaction.")
@click.option("--per-customer-daily-cap", help="Native tokens per customer per day.")
@click.option("--period-cap", help="Native tokens per period.")
@click.option("--period-days", type=int, help="Length of a budget period in days.")
@click.option("--active/--inactive", default=None, help="Turn the sponsorship on or off.")
def sponsor_set(
    tenant_slug: str,
    name: str | None,
    add_funds: str,
    per_transaction_cap: str | None,
    per_customer_daily_cap: str | None,
    period_cap: str | None,
    period_days: int | None,
    active: bool | None,
) -> None:
    """Create or update a utility's gas sponsorship and top up its funds."""
    from sqlmodel import select

    from chain.tokens import parse_units
    from core.db import Database
    from identity.models import Tenant
    from relayer.sponsorship import configure_sponsor, spent_wei

    settings = cli_settings()

    def wei(text: str | None) -> int | None:
        return None if text is None else parse_units(text, 18)

    async def run() -> None:
        db = Database(settings.resolved_database_url)
        try:
            async with db.session() as session:
                tenant = (
                    await session.execute(select(Tenant).where(Tenant.slug == tenant_slug))
                ).scalar_one_or_none()
                if tenant is None:
                    raise click.ClickException(f"no utility with slug {tenant_slug!r}")
                row = await configure_sponsor(
                    session,
                    tenant_id=tenant.id,
                    name=name or tenant.name,
                    add_funds_wei=wei(add_funds) or 0,
                    per_transaction_cap_wei=wei(per_transaction_cap),
                    per_customer_daily_cap_wei=wei(per_customer_daily_cap),
                    period_cap_wei=wei(period_cap),
                    period_seconds=period_days * 86400 if period_days else None,
                    active=active,
                )
                spent = await spent_wei(session, row.id)
                click.echo(
                    f"{row.name}: funds {row.funds_wei} wei, spent {spent} wei, "
                    f"{'active' if row.active else 'inactive'}"
                )
        finally:
            await db.dispose()

    asyncio.run(run())
