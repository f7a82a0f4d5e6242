"""``onramp``: the card onramp's reconciliation, operators' resolutions, processor and treasury."""

from __future__ import annotations

import asyncio
import sys

import click

from cli.common import cli_settings, configure_logging


@click.group()
def onramp() -> None:
    """The card onramp (Stripe): reconciliation, operators' resolutions, the processor, the
    treasury."""


@onramp.command("reconcile")
@click.option(
    "--days",
    type=click.IntRange(min=0),
    default=None,
    help="Only PaymentIntents and payments created in the last DAYS days (default: all).",
)
def onramp_reconcile(days: int | None) -> None:
    """Repair, then check, the card payments against Stripe. First every payment whose money
    went back (or whose refund failed) is read again from Stripe and updated in the database
    as the processor would (a refund that failed unseen makes it REFUND_FAILED); then every
    succeeded PaymentIntent of the onramp must have exactly one confirmed delivery (none when
    refunded or disputed before delivery) and nothing may be delivered for a payment Stripe does
    not show as succeeded. Lists each repair and mismatch; exit code 1 if any mismatch. A
    clawback or a REFUND_FAILED payment an operator resolved (`onramp resolve`) is listed as
    resolved, neither a clawback nor a mismatch."""
    from datetime import timedelta

    from api.container import Services
    from core.db import utc_now
    from onramp.reconcile import Reconciliation, reconcile

    settings = cli_settings()
    since = utc_now() - timedelta(days=days) if days is not None else None

    async def run() -> Reconciliation:
        services = await Services.start(settings, writes_trust=False)
        try:
            return await reconcile(services, since=since)
        finally:
            await services.close()

    report = asyncio.run(run())
    for payment_intent_id in report.repaired:
        click.echo(f"repaired  {payment_intent_id}: updated to what Stripe shows of its refunds")
    for mismatch in report.mismatches:
        click.echo(
            f"MISMATCH {mismatch.payment_intent_id} (payment {mismatch.payment_id or '-'}): "
            f"{mismatch.problem}"
        )
    for payment_intent_id in report.in_flight:
        click.echo(f"in flight {payment_intent_id}: the delivery is not final yet")
    for payment_intent_id in report.clawbacks:
        click.echo(f"clawback  {payment_intent_id}: refunded or disputed after delivery")
    for resolved in report.resolved:
        click.echo(
            f"resolved  {resolved.payment_intent_id}: {resolved.case}, settled by "
            f"{resolved.resolved_by} at {resolved.resolved_at:%Y-%m-%d %H:%M} UTC"
        )
    click.echo(
        f"{report.refunds_rechecked} payments with money back (or a failed refund) read again "
        f"from Stripe: {len(report.repaired)} repaired"
    )
    click.echo(
        f"{report.succeeded_checked} succeeded PaymentIntents checked: {report.delivered} "
        f"delivered once, {len(report.in_flight)} in flight, {len(report.mismatches)} mismatches"
    )
    if report.mismatches:
        sys.exit(1)


def _login_name() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no USER/LOGNAME and no passwd entry (some containers)
        return ""


@onramp.command("resolve")
@click.argument("payment")
@click.option(
    "--note",
    required=True,
    help="How the case was settled: tokens clawed back or the loss written off; how the money "
    "was returned (bank transfer, cheque … with its reference). One line, at most 500 "
    "characters.",
)
@click.option(
    "--operator",
    default=_login_name,
    show_default="your login name",
    help="Who settled it, recorded with the note.",
)
def onramp_resolve(payment: str, note: str, operator: str) -> None:
    """Record that an operator settled a card payment's case: a clawback (money went back after
    the tokens were delivered: claw them back or write the loss off) or a REFUND_FAILED payment
    (nothing delivered and the refund to the card failed: the money returned another way).
    PAYMENT is the payment's id or its PaymentIntent id (pi_…). Status, clawback flag and
    amounts stay as they are; `reconcile` and /metrics stop counting the case. Refused for a
    payment that needs no operator or is resolved already; money moving again (another refund
    or a dispute) reopens the case."""
    from core.db import Database
    from onramp.resolution import OperatorResolution, resolve_operator_case

    settings = cli_settings()

    async def run() -> OperatorResolution:
        db = Database(settings.resolved_database_url)
        try:
            async with db.session() as session:
                return await resolve_operator_case(
                    session, payment_reference=payment, note=note, operator=operator
                )
        finally:
            await db.dispose()

    resolution = asyncio.run(run())
    click.echo(
        f"resolved  {resolution.payment_id} ({resolution.payment_intent_id}): {resolution.case}; "
        f"{resolution.status}, {resolution.refunded} back, {resolution.refund_failed} of refunds "
        f"failed, disputed: {'yes' if resolution.disputed else 'no'}"
    )
    click.echo(
        f"by {resolution.resolved_by} at {resolution.resolved_at:%Y-%m-%d %H:%M:%S} UTC: "
        f"{resolution.note}"
    )


@onramp.command("process")
def onramp_process() -> None:
    """Run the onramp processor as its own process (Stripe events → token deliveries, and the
    followers: card enrollments, administrators' registry changes; set
    OVPP_ONRAMP_PROCESSOR_IN_SERVE=false for serve then). Several may share PostgreSQL."""
    import os
    import signal

    from api.container import ONRAMP_FOLLOWERS, Services
    from onramp.processor import start_onramp_processor

    settings = cli_settings()
    configure_logging(settings)

    async def run() -> None:
        services = await Services.start(settings, writes_trust=False)
        if services.stripe is None:
            click.echo(
                "the card onramp is not configured (OVPP_STRIPE_API_KEY …): following "
                "enrollments and registry changes only"
            )
        running = await start_onramp_processor(
            services, name=f"onramp-{os.getpid()}", followers=ONRAMP_FOLLOWERS
        )
        loop = asyncio.get_running_loop()

        def stop() -> None:
            running.stop.set()
            running.processor.wake()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop)
        click.echo(f"onramp processor running (pid {os.getpid()}); Ctrl-C stops it")
        await running.task
        await services.close()

    asyncio.run(run())


@onramp.command("treasury")
def onramp_treasury() -> None:
    """Show the onramp treasury wallet (fund it with the OVPP and stablecoin card buyers get)."""
    from api.container import Services
    from chain.tokens import format_units
    from onramp.treasury import treasury_account

    settings = cli_settings()

    async def run() -> None:
        services = await Services.start(settings, writes_trust=False)
        try:
            account = await treasury_account(services)
            click.echo(f"treasury wallet {account.wallet.address}")
            for token, raw in await services.chain.balances(account.wallet.address):
                click.echo(f"  {token.symbol:>6} {format_units(raw, token.decimals)}")
        finally:
            await services.close()

    asyncio.run(run())
