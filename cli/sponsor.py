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
@click.option("--per-transaction-cap", help="Native tokens of gas at most per transaction.")
@click.option("--per-customer-daily-cap", help="Native tokens per customer per day.")
@click.option("--period-cap", help="Native tokens per period.")
@click.option("--period-days", type=int, help="Length of a budget period in days.")
@click.option("--active/--inactive", default=None, help="Turn the sponsorship on or off.")
def sponsor_set(
    tenant_slug: str,
    name: str | None,
    per_transaction_cap: str | None,
    per_customer_daily_cap: str | None,
    period_cap: str | None,
    period_days: int | None,
    active: bool | None,
) -> None:
    """Create or update a utility's gas sponsorship (its funds: ``sponsor credit``, or the
    utility's ``fundSponsorship``)."""
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


@sponsor.command("credit")
@click.option("--utility", "utility_slug", required=True, help="The utility's slug.")
@click.option("--amount", required=True, help="Native tokens of gas funds to add, e.g. 0.5")
@click.option("--operator", required=True, help="Who credits it (recorded).")
@click.option(
    "--reference", required=True, help="The payment's reference (recorded; credited once)."
)
def sponsor_credit(utility_slug: str, amount: str, operator: str, reference: str) -> None:
    """Credit a utility's gas sponsorship for a payment received outside the chain: the
    funding records who credited it and the payment's reference, which is credited once."""
    from sqlmodel import select

    from chain.tokens import AmountError, parse_units
    from core.db import Database
    from core.errors import InvalidInput
    from identity.models import Tenant
    from relayer.sponsorship import credit_by_operator, spent_wei

    settings = cli_settings()
    try:
        amount_wei = parse_units(amount, 18)
    except AmountError as error:
        raise click.BadParameter(str(error), param_hint="--amount") from error

    async def run() -> None:
        db = Database(settings.resolved_database_url)
        try:
            async with db.session() as session:
                tenant = (
                    await session.execute(select(Tenant).where(Tenant.slug == utility_slug))
                ).scalar_one_or_none()
                if tenant is None:
                    raise click.ClickException(f"no utility with slug {utility_slug!r}")
                try:
                    row = await credit_by_operator(
                        session,
                        tenant_id=tenant.id,
                        name=tenant.name,
                        amount_wei=amount_wei,
                        operator=operator,
                        reference=reference,
                    )
                except InvalidInput as error:
                    raise click.ClickException(error.message) from error
                spent = await spent_wei(session, row.id)
                click.echo(
                    f"{row.name}: credited {amount_wei} wei by {operator.strip()} "
                    f"(reference {reference.strip()}); funds {row.funds_wei} wei, "
                    f"spent {spent} wei"
                )
        finally:
            await db.dispose()

    asyncio.run(run())
