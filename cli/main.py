"""``ovpp-wallet``: the command line of the backend."""

from __future__ import annotations

import asyncio
import logging
import sys

import click

from core.errors import ConfigurationError, DomainError
from core.settings import Settings, load_settings, rpc_url_shown, without_credentials


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigurationError as error:  # each bad variable by name, without its value
        raise click.ClickException(error.message) from None
    except Exception as error:
        raise click.ClickException(f"configuration error: {error}") from error


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # web3 and httpx log every request at DEBUG/INFO; keep them quiet unless asked.
    for noisy in ("httpx", "web3", "urllib3", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.root.level))


class _CommandGroup(click.Group):
    """Expected failures (the ``DomainError`` root, e.g. a missing OVPP_KEK in production)
    end a command with their user-safe message and exit code 1, never a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except DomainError as error:
            raise click.ClickException(error.message) from error


@click.group(cls=_CommandGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """OpenVPP wallet backend: GraphQL API, custodial wallets, relayer and enrollment."""


@main.command()
def serve() -> None:
    """Run the API. With nothing configured: SQLite, a local anvil with persisted state,
    contracts deployed once, the development OpenID Provider and a funded demo customer."""
    import signal

    import uvicorn

    from api.app import create_app
    from api.container import load_keyring
    from devsupport.bootstrap import Progress, local_stack

    # A service manager stops with SIGTERM. Its default action ends the process at once, and
    # uvicorn re-raises the signal after its graceful shutdown: anvil, the provider and
    # localstripe would outlive serve and hold their ports. Raised as an exception instead,
    # it unwinds local_stack, which stops them (also when it comes during start-up).
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    settings = _settings()
    _configure_logging(settings)
    # Fail before anything starts: otherwise a missing OVPP_KEK in production surfaces only
    # after anvil, migrations and deployment, as a traceback from the server's lifespan.
    load_keyring(settings)
    progress = Progress(total=5 if settings.is_development else 3)
    try:
        with local_stack(settings, progress):
            progress.done()
            click.echo(f"GraphQL:  http://{settings.host}:{settings.port}/graphql")
            if settings.is_development:
                click.echo("Token:    .venv/bin/ovpp-wallet dev-token --email alice@example.com")
            server = uvicorn.Server(
                uvicorn.Config(
                    create_app(
                        settings,
                        run_relayer=settings.relayer_in_serve,
                        run_onramp_processor=settings.onramp_processor_in_serve,
                    ),
                    host=settings.host,
                    port=settings.port,
                    log_level=settings.log_level.lower(),
                    proxy_headers=False,
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


@main.command()
def relayer() -> None:
    """Run the relayer worker as its own process (scale out: several may share PostgreSQL)."""
    import os
    import signal
    import threading

    # Stop requests are honoured from the very start, even during the imports and start-up
    # below: a SIGTERM then ends the process cleanly instead of killing it mid-way.
    stop_requested = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop_requested.set())

    import uvloop

    from api.container import Services
    from relayer.runner import start_relayer

    settings = _settings()
    _configure_logging(settings)

    async def run() -> None:
        services = await Services.start(settings)
        try:
            if stop_requested.is_set():
                return
            running = await start_relayer(services, name=f"relayer-{os.getpid()}")
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, running.stop.set)
            if stop_requested.is_set():
                running.stop.set()
            click.echo(f"relayer worker running (pid {os.getpid()}); Ctrl-C stops it")
            await running.task
        finally:
            await services.close()

    uvloop.run(run())  # asyncpg and aiohttp spend ~30 % less CPU on uvloop's event loop


@main.command("relayer-authorize")
def relayer_authorize() -> None:
    """Let the forwarder accept the relayer keys' transactions (it refuses any other sender).
    Signed by the forwarder's owner, the deploying account (OVPP_DEPLOYER_PRIVATE_KEY); local
    chains need no step, the relayer authorizes its keys itself. Creates the keys if needed."""
    from api.container import Services
    from chain.profiles import deployer_key
    from relayer.keys import authorize_keys, ensure_relayer_keys

    settings = _settings()

    async def run() -> tuple[list[str], list[str]]:
        services = await Services.start(settings)
        try:
            keys = await ensure_relayer_keys(services, count=settings.relayer_keys)
            addresses = [key.address for key in keys]
            owner_key = deployer_key(settings, services.chain.profile)
            return addresses, await authorize_keys(services, addresses, owner_key=owner_key)
        finally:
            await services.close()

    addresses, added = asyncio.run(run())
    for address in addresses:
        state = "authorized now" if address in added else "already authorized"
        click.echo(f"relayer key {address}: {state}")


@main.command()
def migrate() -> None:
    """Bring the database schema to the newest migration."""
    from core.migrate import upgrade_to_head

    settings = _settings()
    asyncio.run(upgrade_to_head(settings.resolved_database_url))
    click.echo("database is at the newest migration")


@main.command()
def deploy() -> None:
    """Deploy the forwarder and tokens to the configured chain; write its address book."""
    from chain.address_book import address_book_path
    from chain.deploy import Deployer
    from chain.profiles import deployer_key, profile_from_settings

    settings = _settings()
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


@main.command("dev-token")
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

    settings = _settings()
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


@main.command()
@click.option("--token", envvar="OVPP_ACCESS_TOKEN", help="An access token (or OVPP_ACCESS_TOKEN).")
@click.option("--email", help="Development only: sign in as this address through the dev provider.")
@click.option("--url", default=None, help="The API (default: this configuration's host and port).")
def balances(token: str | None, email: str | None, url: str | None) -> None:
    """Show a customer's wallet balances, read from the chain, through the GraphQL API with the
    typed client (clients/python) — the same calls a utility's app makes."""
    from ovpp_client import WalletApiError, WalletClient

    settings = _settings()
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


@main.group()
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

    settings = _settings()
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


@main.group()
def registry() -> None:
    """The OpenVPP registry: vendors' device models."""


@registry.command("add-model")
@click.option("--make", required=True)
@click.option("--model", required=True)
@click.option(
    "--type",
    "device_type",
    required=True,
    type=click.Choice(["BATTERY", "EV_CHARGER", "SOLAR_INVERTER", "THERMOSTAT", "HEAT_PUMP", "EV"]),
)
@click.option("--max-charge-kw", default="0", show_default=True)
@click.option("--max-discharge-kw", default="0", show_default=True)
@click.option("--energy-kwh", default="0", show_default=True)
@click.option("--nominal-voltage", type=int, default=240, show_default=True)
@click.option(
    "--protocol",
    "protocols",
    multiple=True,
    required=True,
    type=click.Choice(
        ["OPENADR_2_0B", "OPENADR_3", "IEEE_2030_5", "OCPP_2_0_1", "OCPP_1_6J", "MATTER"]
    ),
    help="Repeat for each protocol the device's server speaks.",
)
@click.option("--endpoint", required=True, help="The vendor's device connectivity server.")
@click.option("--cert-fingerprint", default="0x" + "00" * 32, help="SHA-256 of the vendor cert.")
def registry_add_model(
    make: str,
    model: str,
    device_type: str,
    max_charge_kw: str,
    max_discharge_kw: str,
    energy_kwh: str,
    nominal_voltage: int,
    protocols: tuple[str, ...],
    endpoint: str,
    cert_fingerprint: str,
) -> None:
    """Register or update a device model, signed by the vendor's key (OVPP_VENDOR_PRIVATE_KEY;
    the vendor must have been onboarded by the registrar)."""
    from api.container import Services
    from chain.profiles import deployer_key, vendor_key
    from chain.tokens import parse_units
    from programs.admin import DeviceModelSpec, address_of, register_device_model, register_vendor
    from registry_client.types import DeviceType

    settings = _settings()
    fingerprint = bytes.fromhex(cert_fingerprint.removeprefix("0x"))
    if len(fingerprint) != 32:
        raise click.ClickException("--cert-fingerprint is 32 bytes of hex")
    spec = DeviceModelSpec(
        make=make,
        model=model,
        device_type=DeviceType[device_type],
        max_charge_w=parse_units(max_charge_kw, 3),
        max_discharge_w=parse_units(max_discharge_kw, 3),
        energy_wh=parse_units(energy_kwh, 3),
        nominal_voltage_v=nominal_voltage,
        protocols=list(protocols),
        vendor_endpoint=endpoint,
        vendor_cert_fingerprint=fingerprint,
    )

    async def run() -> bytes:
        services = await Services.start(settings)
        try:
            key = vendor_key(settings, services.chain.profile)
            if services.chain.profile.is_local:  # the local registrar onboards the demo vendor
                await register_vendor(
                    services,
                    vendor=address_of(key),
                    operator_key=deployer_key(settings, services.chain.profile),
                )
            return await register_device_model(services, spec=spec, vendor_key=key)
        finally:
            await services.close()

    model_id = asyncio.run(run())
    click.echo(f"{make} {model} registered as 0x{model_id.hex()}")


@main.group()
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

    settings = _settings()

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


@main.group()
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

    settings = _settings()
    since = utc_now() - timedelta(days=days) if days is not None else None

    async def run() -> Reconciliation:
        services = await Services.start(settings)
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
    from onramp.service import OperatorResolution, resolve_operator_case

    settings = _settings()

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
    """Run the onramp processor as its own process (Stripe events → token deliveries; set
    OVPP_ONRAMP_PROCESSOR_IN_SERVE=false for serve then). Several may share PostgreSQL."""
    import os
    import signal

    from api.container import ONRAMP_FOLLOWERS, Services
    from onramp.processor import start_onramp_processor

    settings = _settings()
    _configure_logging(settings)

    async def run() -> None:
        services = await Services.start(settings)
        if services.stripe is None:
            await services.close()
            raise click.ClickException("the onramp is not configured (OVPP_STRIPE_API_KEY …)")
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
    from onramp.service import treasury_account

    settings = _settings()

    async def run() -> None:
        services = await Services.start(settings)
        try:
            account = await treasury_account(services)
            click.echo(f"treasury wallet {account.wallet.address}")
            for token, raw in await services.chain.balances(account.wallet.address):
                click.echo(f"  {token.symbol:>6} {format_units(raw, token.decimals)}")
        finally:
            await services.close()

    asyncio.run(run())


@main.command("schema")
@click.option("--write", is_flag=True, help="Write clients/schema.graphql instead of printing.")
def show_schema(write: bool) -> None:
    """Print the GraphQL schema (SDL) the API serves; --write publishes it to the clients."""
    from api.sdl import PUBLISHED_SCHEMA, schema_sdl

    sdl = schema_sdl(_settings())
    if write:
        PUBLISHED_SCHEMA.write_text(sdl, encoding="utf-8")
        click.echo(f"wrote {PUBLISHED_SCHEMA}")
        return
    click.echo(sdl, nl=False)


@main.command("config")
@click.option("--markdown", is_flag=True, help="Print the README's configuration table.")
def show_config(markdown: bool) -> None:
    """Show every setting (secrets hidden)."""
    fields = Settings.model_fields
    if markdown:
        click.echo("| variable | default | meaning |\n|---|---|---|")
        for name, field in fields.items():
            default = field.default if field.default_factory is None else "[]"
            if name == "data_dir":
                default = "./var"
            click.echo(f"| `OVPP_{name.upper()}` | `{default}` | {field.description or ''} |")
        return
    settings = _settings()
    shown = {"database_url": without_credentials, "rpc_url": rpc_url_shown}
    for name in fields:
        value = getattr(settings, name)
        if isinstance(value, str) and name in shown:
            value = shown[name](value)
        click.echo(f"OVPP_{name.upper()}={value!s}")


if __name__ == "__main__":
    main()
